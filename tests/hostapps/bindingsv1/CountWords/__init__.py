def main(line: str) -> int:
    return len(line.split())
