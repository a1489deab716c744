import os

import azure.functions as func


def main(mytimer: func.TimerRequest) -> str:
    with open(os.environ["TICK_LOG"], "a") as f:
        f.write(f"tick past_due={mytimer.past_due}\n")
    return "tick"           # a queue output binding on a timer trigger
