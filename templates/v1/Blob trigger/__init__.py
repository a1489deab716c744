import logging

import azure.functions as func


def main(myblob: func.InputStream) -> None:
    logging.info("Python blob trigger function processed blob\n"
                 "Name: %s\n"
                 "Blob Size: %s bytes", myblob.name, myblob.length)
