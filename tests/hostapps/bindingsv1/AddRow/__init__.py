import azure.functions as func


def main(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> str:
    """The table row is the return value (JSON text); the HTTP response is an output binding of its own."""
    res.set(func.HttpResponse("row added", status_code=201))
    return req.get_body().decode()
