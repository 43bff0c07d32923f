"""Throwaway certificates for the TLS tests, made with the openssl command at run time."""
import shutil
import ssl
import subprocess

import pytest


def make_certificate(directory, name, ip=None):
    """(certificate, key) files: a self-signed P-256 pair for DNS ``name`` (and ``ip``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: no certificate to test with")
    cert, key = str(directory / ("%s.pem" % name)), str(directory / ("%s.key" % name))
    names = "DNS:%s" % name + (",IP:%s" % ip if ip else "")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=%s" % name,
                    "-addext", "subjectAltName=%s" % names, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def server_context(files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*files)
    return context


def client_context(files):
    """A client that trusts only this certificate."""
    return ssl.create_default_context(cafile=files[0])
