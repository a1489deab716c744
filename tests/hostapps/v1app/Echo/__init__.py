import json

import azure.functions as func


def main(req: func.HttpRequest, res: func.Out[func.HttpResponse], context: func.Context) -> None:
    res.set(func.HttpResponse(json.dumps({"id": int(req.route_params["id"]), "body": req.get_json(),
                                          "fn": context.function_name}), status_code=201,
                              mimetype="application/json"))
