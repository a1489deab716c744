

@$target.activity_trigger(input_name="name")
def $name(name: str) -> str:
    return f"Hello {name}!"
