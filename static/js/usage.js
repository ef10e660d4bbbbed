/* The usage chart: draws the figures the page sends in #usage-data (json_script) on
   #usage-chart with the vendored Chart.js. The CSP allows no inline script, so this is the
   only code the page runs besides htmx. The table under the chart holds the same figures and
   is what a visitor without JavaScript reads.

   The chart is re-created (the old one destroyed first) whenever htmx swaps the report in,
   when the colour scheme changes, and after htmx restores a page from its history cache. */
(function () {
  "use strict";

  var chart = null;
  var money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  // The axis says "$1,200", never "$1.2K": dollars in full, as finance writes them; cents
  // only when the steps are smaller than a dollar.
  var axisMoney = new Intl.NumberFormat("en-US", {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 0,
    maximumFractionDigits: 2,
  });
  var darkScheme = window.matchMedia("(prefers-color-scheme: dark)");
  var reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

  function destroy() {
    if (chart !== null) {
      chart.destroy();
      chart = null;
    }
  }

  // Colours come from the stylesheet's custom properties, so the chart follows the scheme.
  function cssVar(element, name, fallback) {
    var value = getComputedStyle(element).getPropertyValue(name).trim();
    return value || fallback;
  }

  // The figures sit in a json_script inside <template id="usage-chart-data">, so that
  // htmx, which drops script elements from swapped HTML, keeps them.
  function findData() {
    var holder = document.getElementById("usage-chart-data");
    if (holder && holder.content) {
      return holder.content.getElementById("usage-data");
    }
    return document.getElementById("usage-data");
  }

  function readData(source) {
    try {
      var data = JSON.parse(source.textContent);
      return data && Array.isArray(data.values) ? data : null;
    } catch (err) {
      return null;
    }
  }

  function draw() {
    destroy();
    var canvas = document.getElementById("usage-chart");
    var source = findData();
    if (!canvas || !source || typeof window.Chart === "undefined") {
      return;
    }
    var leftover = window.Chart.getChart(canvas);
    if (leftover) {
      leftover.destroy();
    }
    var data = readData(source);
    if (data === null) {
      return;
    }
    var box = canvas.parentElement;
    var bar = cssVar(box, "--usage-bar", "#c2410c");
    var barSoFar = cssVar(box, "--usage-bar-so-far", "#f2b48f");
    var grid = cssVar(box, "--usage-grid", "#dde1e6");
    var text = cssVar(box, "--usage-axis", "#5b6470");
    var dense = data.values.length > 120;
    var colours = data.inProgress.map(function (soFar) {
      return soFar ? barSoFar : bar;
    });

    chart = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          {
            label: "Spend per " + data.unit,
            data: data.values,
            backgroundColor: colours,
            hoverBackgroundColor: colours,
            // Hundreds of hours: bars side by side, square, or they fade into anti-aliasing.
            borderRadius: dense ? 0 : 2,
            barPercentage: dense ? 1 : 0.9,
            categoryPercentage: dense ? 1 : 0.8,
            maxBarThickness: 48,
          },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion.matches ? false : { duration: 250 },
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: function (items) {
                return items.length ? data.titles[items[0].dataIndex] : "";
              },
              label: function (item) {
                var soFar = data.inProgress[item.dataIndex] ? " so far" : "";
                return money.format(item.parsed.y) + soFar;
              },
            },
          },
        },
        scales: {
          x: {
            grid: { display: false },
            border: { color: grid },
            ticks: { color: text, autoSkip: true, autoSkipPadding: 16, maxRotation: 0 },
          },
          y: {
            beginAtZero: true,
            grid: { color: grid },
            border: { display: false },
            ticks: {
              color: text,
              maxTicksLimit: 6,
              callback: function (value) {
                return axisMoney.format(value);
              },
            },
          },
        },
      },
    });
  }

  function isRefusedReport(detail) {
    return (
      detail.xhr.status === 400 && Boolean(detail.target) && detail.target.id === "usage-report"
    );
  }

  function containsChart(element) {
    return (
      element !== document.body &&
      element.nodeType === 1 &&
      (element.id === "usage-chart" || element.querySelector("#usage-chart") !== null)
    );
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
  darkScheme.addEventListener("change", draw);

  if (window.htmx) {
    // New content from a swap or from the history cache: draw on the new canvas.
    window.htmx.onLoad(function (element) {
      if (containsChart(element)) {
        draw();
      }
    });
    // A report refused for bad input comes back as 400 with the form and its errors:
    // show it (htmx leaves 4xx answers unswapped by default).
    document.addEventListener("htmx:beforeSwap", function (event) {
      if (isRefusedReport(event.detail)) {
        event.detail.shouldSwap = true;
        event.detail.isError = false;
      }
    });
    // With DEBUG on, django-htmx's helper replaces the whole document with any 400 answer
    // (to show Django's error pages). This one is the report with its form errors, meant
    // for the report: keep the event from reaching that helper; htmx goes on as usual.
    window.addEventListener(
      "htmx:beforeOnLoad",
      function (event) {
        if (isRefusedReport(event.detail)) {
          event.stopPropagation();
        }
      },
      true
    );
    // htmx keeps a copy of the page's HTML for the back button. Chart.js sizes the canvas
    // with inline styles, which that copy must not carry: restored as HTML, they would break
    // the style-src policy. The page is about to be replaced anyway.
    document.addEventListener("htmx:beforeHistorySave", function () {
      destroy();
      var canvas = document.getElementById("usage-chart");
      if (canvas) {
        canvas.removeAttribute("style");
      }
    });
  }
})();
