def main(text: str) -> str:
    return f"Hello({text})"
