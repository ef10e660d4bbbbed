-- wrk script for `make bench`: sends the session cookie (first script argument, may be empty),
-- counts answers per status and the overview's card states per thread, and prints one JSON
-- line (prefixed "BENCH-JSON ") with them, the request count and the latency percentiles.
--
-- The card states are read from the HTML the overview renders (templates/dashboard/overview.html):
--   stale    a card showing its last figures: "..., Cloudflare is not answering."
--   pending  a card not back by the page's deadline: "Still loading"
--   failed   a card with no figures at all: class="notice notice-error"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local cookie = args[1]
  if cookie ~= nil and cookie ~= "" then
    wrk.headers["Cookie"] = cookie
  end
  statuses = {}
  stale = 0
  pending = 0
  failed = 0
end

local function has(body, text)
  return string.find(body, text, 1, true) ~= nil
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 and body ~= nil then
    if has(body, "Cloudflare is not answering") then stale = stale + 1 end
    if has(body, "Still loading") then pending = pending + 1 end
    if has(body, 'class="notice notice-error"') then failed = failed + 1 end
  end
end

function done(summary, latency, requests)
  local totals = {}
  local pages = { stale = 0, pending = 0, failed = 0 }
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      totals[status] = (totals[status] or 0) + count
    end
    for name, _ in pairs(pages) do
      pages[name] = pages[name] + (thread:get(name) or 0)
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "statuses": {%s}, ' ..
    '"stale": %d, "pending": %d, "failed": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, table.concat(parts, ", "),
    pages.stale, pages.pending, pages.failed,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
