#!/usr/bin/python3
"""A small SMTP server for the integration tests (Debian's python3-aiosmtpd).

Usage: smtp_sink.py PORT DIR

Listens on 127.0.0.1:PORT. Every accepted message is written to DIR as <n>.eml: the
envelope as two X-Sink-* header lines, then the message exactly as received (CRLF line
ends). A file is written under a hidden temporary name and renamed into place, so a reader
never sees half a message. Recipients whose local part starts with "reject" are refused at
RCPT with 550. Prints "ready" (flushed) once listening; exits on SIGTERM or SIGINT.
"""

import itertools
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class SinkHandler:
    def __init__(self, directory):
        self._dir = directory
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0]
        if local.lower().startswith("reject"):
            return "550 5.1.1 <%s>: recipient rejected by the test sink" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        head = "X-Sink-Mail-From: %s\r\nX-Sink-Rcpt-To: %s\r\n" % (
            envelope.mail_from,
            ", ".join(envelope.rcpt_tos),
        )
        with self._lock:
            n = next(self._counter)
        final = os.path.join(self._dir, "%06d.eml" % n)
        tmp = os.path.join(self._dir, ".%06d.eml.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(head.encode("ascii", "replace"))
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        # The file is in place before the client hears 250.
        return "250 Message accepted"


def main():
    if len(sys.argv) != 3:
        print("usage: smtp_sink.py PORT DIR", file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    directory = sys.argv[2]
    os.makedirs(directory, exist_ok=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    controller = Controller(SinkHandler(directory), hostname="127.0.0.1", port=port)
    try:
        controller.start()
    except Exception as e:  # e.g. the port was taken in the meantime
        print("smtp_sink: cannot listen on %d: %s" % (port, e), file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
