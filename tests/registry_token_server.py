#!/usr/bin/python3
"""A token server as distribution's token authentication specifies it, standing in for Harbor's or Docker
Hub's (a test fixture for tests/e2e/private_registry.rs, not a mock of the registry).

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...] answers {"token", "access_token",
"expires_in", "issued_at"}: a JWT signed ES256 with --key, whose x5c header carries --cert (the registry's
`rootcertbundle` holds the CA that signed it), with iss/aud/exp/nbf/iat/jti and the `access` claim. Basic
credentials equal to --user/--password are granted every action asked for; wrong ones are a 401; none get a
token with no access (as Harbor's anonymous tokens for private projects). Prints the port it listens on,
then serves until killed. Needs Debian's python3-cryptography.
"""

import argparse
import base64
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--cert", "--key", "--issuer", "--service", "--user", "--password"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(args.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    expected = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()

    def sign(claims: dict) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": x5c}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/token":
                self.send_error(404)
                return
            authorization = self.headers.get("Authorization")
            if authorization is not None and authorization != expected:
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"details":"incorrect username or password"}')
                return
            access = []
            if authorization == expected:
                for scope in parse_qs(url.query).get("scope", []):
                    for item in scope.split(" "):
                        parts = item.split(":")
                        if len(parts) >= 3:
                            access.append({
                                "type": parts[0],
                                "name": ":".join(parts[1:-1]),
                                "actions": parts[-1].split(","),
                            })
            now = int(time.time())
            token = sign({
                "iss": args.issuer,
                "sub": args.user if authorization else "",
                "aud": args.service,
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": b64url(os.urandom(16)),
                "access": access,
            })
            body = json.dumps({
                "token": token,
                "access_token": token,
                "expires_in": 300,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
