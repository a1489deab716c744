import json

import azure.functions as func


def main(report: dict, out: func.Out[str]) -> str:
    out.set(json.dumps(report))
    return f"saved {report['name']}"
