"""A straightforward Python sign-in exporter: the side-by-side CPU baseline of the e2e bench.

What a careful script author would write with `requests` and `azure-storage-blob`: a managed
identity token, every page of /auditLogs/signIns (following @odata.nextLink, honouring
Retry-After), the 30 default columns flattened as the README's column table describes, one CSV
per UTC day (BOM, header, CRLF, `csv` module quoting, line breaks replaced, formula guard, no
point for unknown locations), into a folder or a Blob container (SAS URL): the same daily files,
byte for byte, as `signin-export` writes (the e2e bench compares them for a folder). It writes no
`latest.csv`. Prints one JSON line: {"rows": N, "pages": P}.
"""

import argparse
import csv
import io
import json
import os
import sys
import time
from urllib.parse import quote

import requests

COLUMNS = [
    ("createdDateTime", ("createdDateTime",)),
    ("userDisplayName", ("userDisplayName",)),
    ("userPrincipalName", ("userPrincipalName",)),
    ("userId", ("userId",)),
    ("appDisplayName", ("appDisplayName",)),
    ("appId", ("appId",)),
    ("clientAppUsed", ("clientAppUsed",)),
    ("ipAddress", ("ipAddress",)),
    ("locationCity", ("location", "city")),
    ("locationState", ("location", "state")),
    ("locationCountryOrRegion", ("location", "countryOrRegion")),
    ("latitude", ("location", "geoCoordinates", "latitude")),
    ("longitude", ("location", "geoCoordinates", "longitude")),
    ("location", None),
    ("deviceOperatingSystem", ("deviceDetail", "operatingSystem")),
    ("deviceBrowser", ("deviceDetail", "browser")),
    ("deviceId", ("deviceDetail", "deviceId")),
    ("deviceDisplayName", ("deviceDetail", "displayName")),
    ("deviceIsCompliant", ("deviceDetail", "isCompliant")),
    ("deviceIsManaged", ("deviceDetail", "isManaged")),
    ("deviceTrustType", ("deviceDetail", "trustType")),
    ("statusErrorCode", ("status", "errorCode")),
    ("statusFailureReason", ("status", "failureReason")),
    ("conditionalAccessStatus", ("conditionalAccessStatus",)),
    ("isInteractive", ("isInteractive",)),
    ("riskLevelAggregated", ("riskLevelAggregated",)),
    ("riskState", ("riskState",)),
    ("resourceDisplayName", ("resourceDisplayName",)),
    ("correlationId", ("correlationId",)),
    ("id", ("id",)),
]
BREAKS = str.maketrans({"\r": " ", "\n": " ", "\v": " ", "\f": " ", "\x85": " ", "\u2028": " ", "\u2029": " "})


def lookup(record, path):
    value = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def cell(value, text):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return ";".join(str(v) for v in value if v is not None)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    guarded = text and value[:1] in ("=", "+", "-", "@", "\t", "\r")
    value = value.replace("\r\n", " ").translate(BREAKS)
    return "'" + value if guarded else value


def coordinate(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def point_is_known(record):
    """Graph's unknown locations (no coordinates, nulls, or exactly 0 and 0) export no point."""
    point = lookup(record, ("location", "geoCoordinates")) or {}
    if not isinstance(point, dict):
        return False
    lat, lon = coordinate(point.get("latitude")), coordinate(point.get("longitude"))
    return lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0, 0)


def row(record):
    out = []
    known = point_is_known(record)
    for name, path in COLUMNS:
        if path is None:
            loc = record.get("location") or {}
            parts = [(loc.get(k) or "").strip() for k in ("city", "state", "countryOrRegion")]
            out.append(", ".join(p for p in parts if p))
        elif name in ("latitude", "longitude") and not known:
            out.append("")
        else:
            out.append(cell(lookup(record, path), name not in ("latitude", "longitude", "statusErrorCode")))
    return out


def token():
    response = requests.get(
        os.environ["IDENTITY_ENDPOINT"],
        params={"resource": "https://graph.microsoft.com", "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graph", required=True)
    parser.add_argument("--version", default="beta")
    parser.add_argument("--filter", required=True)
    parser.add_argument("--destination", required=True)
    args = parser.parse_args()

    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token()
    # Spaces as %20, never `+` (OData reads `+` as a literal plus), so no `params=`.
    url = f"{args.graph}/{args.version}/auditLogs/signIns?$filter={quote(args.filter, safe=':/(),')}&$top=1000"
    days = {}
    rows = pages = 0
    while url:
        response = session.get(url, timeout=120)
        if response.status_code == 429 or response.status_code >= 500:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        response.raise_for_status()
        page = response.json()
        pages += 1
        for record in page["value"]:
            day = record["createdDateTime"][:10]
            writer = days.get(day)
            if writer is None:
                buffer = io.StringIO()
                buffer.write("\ufeff")
                writer = (buffer, csv.writer(buffer, lineterminator="\r\n"))
                writer[1].writerow([name for name, _ in COLUMNS])
                days[day] = writer
            writer[1].writerow(row(record))
            rows += 1
        url = page.get("@odata.nextLink")

    if args.destination.startswith("http"):
        from azure.storage.blob import ContainerClient

        container = ContainerClient.from_container_url(args.destination)
        try:
            container.create_container()
        except Exception:  # already there
            pass
        for day, (buffer, _) in days.items():
            container.upload_blob(f"daily/{day}.csv", buffer.getvalue().encode("utf-8"), overwrite=True)
    else:
        folder = os.path.join(args.destination, "daily")
        os.makedirs(folder, exist_ok=True)
        for day, (buffer, _) in days.items():
            with open(os.path.join(folder, f"{day}.csv"), "w", encoding="utf-8", newline="") as f:
                f.write(buffer.getvalue())
    print(json.dumps({"rows": rows, "pages": pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
