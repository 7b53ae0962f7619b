"""A real SMTP relay on loopback for the server's mail tests (server/tests/mail.rs, #23).

aiosmtpd (PyPI) speaks SMTP, STARTTLS and AUTH; this script only decides what it answers and
where what it receives goes. Run it with the interpreter of the venv scripts/test-all makes
(target/smtp-venv, SESSIONKIT_TEST_SMTP_PYTHON):

    python relay.py --dir DIR --port PORT [--tls] [--auth USER:PASSWORD] [--count-only]

- Listens on 127.0.0.1:PORT; writes DIR/ready (holding the port) once it accepts connections.
  --port 0 binds a free port, chosen by the kernel at bind time (no race with another process
  taking a port picked beforehand): read it from DIR/ready. The conformance runners do this.
- Each mail it accepts is written to DIR/mail-NNNN.json (atomically): envelope sender and
  recipients, Subject, From, To, the decoded text and HTML parts, and "headers" (every header
  of the message, name -> value, e.g. Message-ID and Date).
- DIR/mode, read at each mail, says what to answer at the end of DATA: absent or "ok" -> 250,
  "4xx" -> 451 (try later), "5xx" -> 550 (never), "together N" -> 250 once N mails have been
  in DATA at the same time (each waits for the others), 451 for a mail that waited 10 s without
  that happening: a client sending one mail at a time never gets one through. "Down" is the
  process not running.
- --tls: makes a throwaway CA (DIR/ca.pem, the file the server gets as ca_file) and a
  certificate it signs for 127.0.0.1 and localhost, and requires STARTTLS before MAIL.
- --auth USER:PASSWORD: requires AUTH (PLAIN or LOGIN) with these before MAIL.
- DIR/stats (rewritten every 50 ms while mails arrive, and at exit) is JSON: "count" of mails
  accepted since the start, and the wall-clock times (Unix seconds) of the "first" and "last".
  scripts/bench-mail reads it.
- --count-only: answers 250 to every mail and only counts it (DIR/stats): no DIR/mode, no
  parsing, no mail-NNNN.json. For the benchmark, to tell the relay's own cost from the server's.
"""

import argparse
import datetime
import email
import email.policy
import ipaddress
import json
import os
import signal
import socket
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def self_signed(directory):
    """A throwaway CA (DIR/ca.pem, what the server gets as ca_file) and a certificate it signs
    for 127.0.0.1 and localhost, which the relay serves (webpki refuses a CA certificate used
    as the server's own)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, public_key, signing_key, ca):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        else:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("sessionkit test CA", "sessionkit test CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("127.0.0.1", "sessionkit test CA", key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "relay-cert.pem")
    key_path = os.path.join(directory, "relay-key.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(cert_path, "wb") as f:
        f.write(leaf.public_bytes(pem))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


class Handler:
    def __init__(self, directory, count_only=False):
        self.directory = directory
        self.count_only = count_only
        self.count = 0
        self.lock = threading.Lock()
        # Mails accepted since this process started, and when the first and last were.
        self.accepted = 0
        self.first = None
        self.last = None
        # "together N": mails in DATA now, and whether N ever were at once.
        self.in_data = 0
        self.together = None

    def accept(self):
        now = time.time()
        with self.lock:
            self.accepted += 1
            if self.first is None:
                self.first = now
            self.last = now

    def write_stats(self):
        with self.lock:
            stats = {"count": self.accepted, "first": self.first, "last": self.last}
        write_atomically(os.path.join(self.directory, "stats"), json.dumps(stats))

    def mode(self):
        try:
            with open(os.path.join(self.directory, "mode"), encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            return "ok"

    async def handle_DATA(self, server, session, envelope):
        if self.count_only:
            self.accept()
            return "250 OK"
        mode = self.mode()
        if mode == "4xx":
            return "451 4.3.0 relay busy, try again later"
        if mode == "5xx":
            return "550 5.1.1 mailbox unavailable"
        if mode.startswith("together "):
            import asyncio

            if self.together is None:
                self.together = asyncio.Event()  # on the relay's own event loop
            self.in_data += 1
            if self.in_data >= int(mode.split()[1]):
                self.together.set()
            try:
                await asyncio.wait_for(self.together.wait(), 10)
            except asyncio.TimeoutError:
                return "451 4.3.0 waited for other mails in vain"
            finally:
                self.in_data -= 1
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts.setdefault(part.get_content_subtype(), part.get_content())
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg.get("Subject", "")),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "text": parts.get("plain", ""),
            "html": parts.get("html", ""),
            # Every header of the message itself, as sent (name -> value; the last of a name).
            "headers": {k: str(v) for k, v in msg.items()},
        }
        with self.lock:
            self.count += 1
            n = self.count
        write_atomically(
            os.path.join(self.directory, "mail-%04d.json" % n), json.dumps(record, indent=1)
        )
        self.accept()
        return "250 OK"


class BoundController(Controller):
    """A Controller serving a socket already bound (to a port the kernel chose)."""

    def __init__(self, handler, sock, **kwargs):
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)
        self.sock = sock

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self.sock, ssl=self.ssl_context)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--count-only", action="store_true")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    # Mails already received (a restarted relay) keep their numbers.
    handler = Handler(args.dir, args.count_only)
    handler.count = len([f for f in os.listdir(args.dir) if f.startswith("mail-") and f.endswith(".json")])
    kwargs = {}
    if args.tls:
        kwargs["tls_context"] = self_signed(args.dir)
        kwargs["require_starttls"] = True
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                auth_data.login.decode() == user and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd answers 535 itself on a failure.
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # The tests without --tls use AUTH over plain loopback.
        kwargs["auth_require_tls"] = bool(args.tls)
    if args.port == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        controller = BoundController(handler, sock, **kwargs)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    write_atomically(os.path.join(args.dir, "ready"), str(controller.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # A parent may start us with these blocked (Swift's Process spawns from a libdispatch thread,
    # whose mask blocks nearly every signal, and the mask is inherited): terminate must still work.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    handler.write_stats()
    written = 0
    # The stats file follows the count, 50 ms behind at most, without a write per mail.
    while not stop.wait(0.05):
        if handler.accepted != written:
            written = handler.accepted
            handler.write_stats()
    controller.stop()
    handler.write_stats()
    try:
        os.remove(os.path.join(args.dir, "ready"))
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
