#!/usr/bin/env python3
"""A real SMTP server for rules/tests/delivery.rs: aiosmtpd on loopback that
saves every message it accepts into OUT_DIR as <stamp>.eml (raw) and then
<stamp>.json (envelope, decoded headers, text and HTML parts; written last,
atomically, so a reader that sees it sees both).

Usage: smtp_sink.py OUT_DIR PORT. Prints "READY" once it accepts
connections; exits when its standard input closes or on SIGTERM.
Needs aiosmtpd (Debian: python3-aiosmtpd; scripts/setup.sh installs it).
"""

import json
import os
import signal
import sys
import threading
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            stamp = f"{time.time_ns():020d}-{os.getpid()}-{self.n:04d}"
        raw = envelope.original_content or envelope.content
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "date": str(msg["date"]),
            "auto_submitted": str(msg["auto-submitted"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        base = os.path.join(self.out_dir, stamp)
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(doc, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK"


def main():
    out_dir, port = sys.argv[1], int(sys.argv[2])
    os.makedirs(out_dir, exist_ok=True)
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), os._exit(0)))
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
