import json

import azure.functions as func


def main(req: func.HttpRequest, rows) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"type": type(rows).__name__, "rows": json.loads(rows)}),
                             mimetype="application/json")
