import typing

import azure.functions as func


def main(req: func.HttpRequest, msgs: func.Out[typing.List[str]]) -> func.HttpResponse:
    msgs.set(req.get_json())
    return func.HttpResponse("queued", status_code=202)
