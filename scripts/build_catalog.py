"""Build sculpt's compact built-in AWS and GCP catalogs from ../shared/data/catalog.

Run: python scripts/build_catalog.py [DATA_DIR]. Writes sculpt/catalog/data/{aws,gcp}.csv.
Only facts are kept (type, family, vCPU, memory, GPUs, network, local storage, arch, region, $/h).
"""

from __future__ import annotations

import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "sculpt" / "catalog" / "data"
COLUMNS = ["shape", "family", "vcpu", "memory_gib", "gpus", "network_gbps", "storage", "arch", "region",
           "price_hour", "spot_price_hour"]

AWS_FAMILIES = {"m5", "c5", "r5", "m5d", "c5d", "r5d", "m6i", "c6i", "r6i", "m6id", "c6id", "r6id", "m7i", "c7i",
                "r7i", "m6a", "c6a", "r6a", "m7g", "c7g", "r7g", "t3", "g5"}
AWS_REGIONS = {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1", "eu-west-2",
               "eu-central-1", "eu-north-1", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1",
               "sa-east-1"}
GCP_FAMILIES = {"e2-standard", "e2-highcpu", "e2-highmem", "n2-standard", "n2-highcpu", "n2-highmem",
                "n2d-standard", "n2d-highcpu", "n2d-highmem", "c3-standard", "c3-highcpu", "c3-highmem",
                "g2-standard"}
GCP_REGIONS = {"us-central1", "us-east1", "us-east4", "us-west1", "europe-west1", "europe-west4",
               "europe-north1", "asia-east1", "asia-northeast1", "asia-south1", "southamerica-east1"}


def _gbps(text: str) -> str:
    m = re.search(r"([\d.]+)\s*Gigabit", text)
    if m:
        return m.group(1)
    return {"Very Low": "0.05", "Low": "0.3", "Moderate": "0.75", "High": "5"}.get(text.strip(), "")


def aws(data: Path) -> list[dict[str, str]]:
    specs = {r["InstanceType"]: r for r in csv.DictReader(open(data / "aws_instance_types_moto-5.2.5.csv"))}
    offered = {(r["InstanceType"], r["Region"]) for r in csv.DictReader(open(data / "aws_region_offerings_moto-5.2.5.csv"))}
    out = []
    for r in csv.DictReader(open(data / "aws_ec2_linux_ondemand_libcloud-3.9.1_2025-03-02.csv")):
        t, region = r["InstanceType"], r["Region"]
        fam = t.split(".")[0]
        if fam not in AWS_FAMILIES or region not in AWS_REGIONS or t.endswith(".metal") or "metal" in t:
            continue
        spec = specs.get(t)
        if spec is None or (offered and (t, region) not in offered and any(o[1] == region for o in offered)):
            continue
        out.append({
            "shape": t, "family": fam, "vcpu": spec["vCPUs"], "memory_gib": spec["MemoryGiB"],
            "gpus": str(int(float(spec["GPUs"] or 0))), "network_gbps": _gbps(spec["NetworkPerformance"]),
            "storage": "ssd" if fam.endswith("d") else "none",
            "arch": "arm64" if spec["Arch"] == "arm64" else "x86_64",
            "region": region, "price_hour": r["Price"], "spot_price_hour": "",
        })
    return out


def gcp(data: Path) -> list[dict[str, str]]:
    best: dict[tuple[str, str], dict[str, str]] = {}
    for r in csv.DictReader(open(data / "gcp_vms_anycloud_2026-05-20.csv")):
        t, region = r["InstanceType"], r["Region"]
        fam = "-".join(t.split("-")[:2])
        if fam not in GCP_FAMILIES or region not in GCP_REGIONS or not r["Price"]:
            continue
        gpus = int(float(r["AcceleratorCount"] or 0))
        row = {
            "shape": t, "family": fam, "vcpu": r["vCPUs"], "memory_gib": r["MemoryGiB"], "gpus": str(gpus),
            "network_gbps": "", "storage": "none", "arch": "x86_64", "region": region,
            "price_hour": r["Price"], "spot_price_hour": r["SpotPrice"],
        }
        key = (t, region)
        # one price per region: the cheapest zone
        if key not in best or float(row["price_hour"]) < float(best[key]["price_hour"]):
            best[key] = row
    return list(best.values())


def write(name: str, rows: list[dict[str, str]]) -> None:
    rows.sort(key=lambda r: (r["region"], r["family"], float(r["vcpu"]), r["shape"]))
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    regions = defaultdict(int)
    for r in rows:
        regions[r["region"]] += 1
    print(f"{name}: {len(rows)} offerings, {len({r['shape'] for r in rows})} shapes, {len(regions)} regions")


if __name__ == "__main__":
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "catalog"
    write("aws", aws(data))
    write("gcp", gcp(data))
