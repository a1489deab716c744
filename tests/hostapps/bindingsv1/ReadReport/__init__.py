import json

import azure.functions as func


def main(req: func.HttpRequest, report: bytes, raw) -> func.HttpResponse:
    if report is None:
        return func.HttpResponse("no report", status_code=404)
    return func.HttpResponse(json.dumps({"type": type(report).__name__, "raw_type": type(raw).__name__,
                                         "report": json.loads(report)}), mimetype="application/json")
