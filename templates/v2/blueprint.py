import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()
