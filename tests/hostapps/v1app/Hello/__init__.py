from ..shared.text import greet


def main(name: str) -> str:
    return greet(name)
