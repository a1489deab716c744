def main(req, x):
    return None
