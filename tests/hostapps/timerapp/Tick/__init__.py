import os

import azure.functions as func


def main(mytimer: func.TimerRequest) -> None:
    with open(os.environ["TICK_LOG"], "a") as f:
        f.write(f"tick past_due={mytimer.past_due}\n")
