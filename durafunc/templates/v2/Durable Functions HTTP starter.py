

@$target.route(route="$name/{functionName}", auth_level=func.AuthLevel.$authlevel_upper)
@$target.durable_client_input(client_name="client")
async def $name(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["functionName"], None, req.get_json() if req.get_body() else None)
    return client.create_check_status_response(req, instance_id)
