import os


def greet(name: str) -> str:
    return f"Hello {name}{os.environ.get('SUFFIX', '')}"
