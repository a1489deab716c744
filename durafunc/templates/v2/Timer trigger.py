

@$target.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def $name(timer: func.TimerRequest) -> None:
    import logging
    if timer.past_due:
        logging.info("The timer is past due!")
    logging.info("Python timer trigger function executed.")
