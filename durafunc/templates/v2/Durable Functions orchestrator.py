

@$target.orchestration_trigger(context_name="context")
def $name(context: df.DurableOrchestrationContext):
    result1 = yield context.call_activity("hello", "Tokyo")
    result2 = yield context.call_activity("hello", "Seattle")
    result3 = yield context.call_activity("hello", "London")
    return [result1, result2, result3]
