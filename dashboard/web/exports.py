"""The CSV exports' answers: the file, or in plain text why it was not made (never a partial
file: it would look complete in a spreadsheet)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence

from django.http import HttpResponse


def csv_response(filename: str, rows: Iterable[Sequence[object]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(rows)
    return response


def not_exported(status: int, why: str) -> HttpResponse:
    text = f"The export was not made: {why}"
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
