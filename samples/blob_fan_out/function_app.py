"""A blob-triggered starter that fans out over the lines of an uploaded file.

Upload a text file to the `uploads` container: the blob trigger starts `process_file` with the file's lines,
the orchestration analyzes every line in parallel (`analyze_line`), and `write_report` writes the summary to
`reports/<file name>.json` with a blob output binding whose path comes from the activity's input
(`{data.name}`). The instance id is derived from the file name, so `durafunc get-runtime-status` finds it.
"""
import json
import logging
import re

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def instance_id_for(name: str) -> str:
    return "lines-" + re.sub(r"[^A-Za-z0-9._-]", "-", name)


@app.blob_trigger(arg_name="upload", path="uploads/{name}", connection="AzureWebJobsStorage")
@app.durable_client_input(client_name="client")
async def start_from_upload(upload: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    name = upload.name.split("/", 1)[1]                      # upload.name is "uploads/<name>"
    lines = upload.read().decode("utf-8").splitlines()
    instance_id = await client.start_new("process_file", instance_id_for(name), {"name": name, "lines": lines})
    logging.info("Started orchestration with ID = '%s' for %s (%d lines, %d bytes).", instance_id, name,
                 len(lines), upload.length)


@app.orchestration_trigger(context_name="context")
def process_file(context: df.DurableOrchestrationContext):
    job = context.get_input()
    results = yield context.task_all([context.call_activity("analyze_line", {"number": i + 1, "text": line})
                                      for i, line in enumerate(job["lines"])])
    report = {"name": job["name"], "lines": len(results), "words": sum(r["words"] for r in results),
              "longest": max(results, key=lambda r: r["words"])["number"] if results else None,
              "results": results}
    yield context.call_activity("write_report", report)
    return {"file": job["name"], "lines": report["lines"], "words": report["words"]}


@app.activity_trigger(input_name="line")
def analyze_line(line: dict) -> dict:
    words = line["text"].split()
    return {"number": line["number"], "words": len(words), "upper": line["text"].upper()}


@app.activity_trigger(input_name="report")
@app.blob_output(arg_name="out", path="reports/{data.name}.json", connection="AzureWebJobsStorage")
def write_report(report: dict, out: func.Out[str]) -> str:
    out.set(json.dumps(report, indent=2))
    return f"reports/{report['name']}.json"
