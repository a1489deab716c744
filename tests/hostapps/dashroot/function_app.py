"""routePrefix "" : `root` claims `/` (disable it to see `/` go to the dashboard), `hub` a route the dashboard
also has a page of that name for."""
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="/", methods=["GET"])
def root(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("the user's root page")


@app.route(route="hub", methods=["GET"])
def hub(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("the user's hub route")
