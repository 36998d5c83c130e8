"""The in-cluster webhook's certificate, managed by the operator (``webhook.certManager.enabled=false``).

A private CA and a serving certificate for the webhook Service's DNS names are kept in one Secret of the
release's namespace (the chart creates it empty; the operator fills ``tls.crt``, ``tls.key``, ``ca.crt`` —
the CA bundle, newest CA first — and ``ca.key``, patching it by name, guarded by its resourceVersion).
The CA bundle is injected as ``caBundle`` into every webhook of the
chart's ValidatingWebhookConfiguration. Every replica serves the Secret's certificate and reloads it in
place when it changes (no listener restart, so no refused connection); only the writer (the leader, or
the only replica) creates, rotates and injects.

Rotation never leaves a window in which the API server distrusts what a replica serves:

1. the serving certificate is renewed when less than ``renew_fraction`` of its validity remains, from the
   same CA, whose certificate the API server already trusts;
2. the CA is renewed the same way, but the new CA is first *added* to the bundle (old CAs stay until they
   expire) and injected; the serving certificate is re-issued from the new CA only once the
   ValidatingWebhookConfiguration is seen to trust it.

The pure part (:func:`plan`) decides; :class:`CertificateManager` reads and writes through the adapters.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meson.adapters import kube

log = logging.getLogger("meson.webhook")

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
# Certificates are valid from a little before they are made: clocks of the API server and the operator
# may disagree a bit.
BACKDATE = dt.timedelta(seconds=60)
DAY = 86400.0


@dataclass(frozen=True)
class CertPolicy:
    """Validity (seconds) of the CA and of the serving certificate; renew when less than
    ``renew_fraction`` of it remains."""

    ca_validity: float = 10 * 365 * DAY
    cert_validity: float = 365 * DAY
    renew_fraction: float = 1 / 3


# --- certificates ---------------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_ca(now: dt.datetime, validity: float, name: str = "meson-webhook-ca") -> tuple[bytes, bytes]:
    """A self-signed CA (PEM certificate, PEM key), valid ``validity`` seconds from ``now``."""
    key = _key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meson.dev"),
            # A distinct name per CA, so that a serving certificate names the CA that signed it.
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-{int(now.timestamp())}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(seconds=validity))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def new_serving_cert(
    ca_cert: bytes, ca_key: bytes, dns_names: Sequence[str], now: dt.datetime, validity: float
) -> tuple[bytes, bytes]:
    """A serving certificate for ``dns_names`` signed by the CA, never valid beyond the CA."""
    ca = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    key = _key()
    not_after = min(now + dt.timedelta(seconds=validity), ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    return _pem(cert), _pem_key(key)


def load_bundle(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _nominal(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc - BACKDATE


def due(cert: x509.Certificate, now: dt.datetime, fraction: float) -> bool:
    """True when less than ``fraction`` of the certificate's validity remains (or it is expired)."""
    return cert.not_valid_after_utc - now < _nominal(cert) * fraction


def _outlives(cert: x509.Certificate, now: dt.datetime, validity: float) -> bool:
    """True when the certificate is valid for longer than the configured validity (it was lowered)."""
    return cert.not_valid_after_utc - now > dt.timedelta(seconds=validity * 1.01 + 1)


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for the webhook Service (it uses ``<svc>.<ns>.svc``)."""
    return [
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
    ]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, or a key type that cannot have signed it
        return False
    return True


def plan(
    data: Mapping[str, bytes] | None,
    trusted: Sequence[x509.Certificate] | None,
    names: Sequence[str],
    now: dt.datetime,
    policy: CertPolicy,
) -> tuple[dict[str, bytes] | None, str]:
    """The Secret data to write next (None: keep it) and why. ``trusted``: the CAs the
    ValidatingWebhookConfiguration trusts now (None when unknown)."""
    data = dict(data or {})
    try:
        cas = load_bundle(data.get(CA_CERT, b""))
        serialization.load_pem_private_key(data[CA_KEY], password=None)
        leaf = x509.load_pem_x509_certificate(data[TLS_CERT])
        serialization.load_pem_private_key(data[TLS_KEY], password=None)
    except (KeyError, ValueError, TypeError):
        cas, leaf = [], None
    if not cas or leaf is None or now >= cas[0].not_valid_after_utc:
        ca_cert, ca_key = new_ca(now, policy.ca_validity)
        cert, key = new_serving_cert(ca_cert, ca_key, names, now, policy.cert_validity)
        return {CA_CERT: ca_cert, CA_KEY: ca_key, TLS_CERT: cert, TLS_KEY: key}, "issued a new CA"
    newest = cas[0]
    alive = [c for c in cas if c.not_valid_after_utc > now]
    if due(newest, now, policy.renew_fraction) or _outlives(newest, now, policy.ca_validity):
        # Step 1 of a CA rotation: publish the new CA next to the old ones; the serving certificate stays.
        ca_cert, ca_key = new_ca(now, policy.ca_validity)
        bundle = ca_cert + b"".join(_pem(c) for c in alive)
        return {**data, CA_CERT: bundle, CA_KEY: ca_key}, "renewed the CA (serving certificate next)"
    if len(alive) < len(cas):
        return {**data, CA_CERT: b"".join(_pem(c) for c in alive)}, "dropped expired CAs from the bundle"
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    reason = ""
    if now >= leaf.not_valid_after_utc:
        reason = "the serving certificate expired"
    elif set(names) - set(sans.get_values_for_type(x509.DNSName)):
        reason = "the Service's names changed"
    elif not _signed_by(leaf, newest):
        reason = "the CA was renewed"
    elif due(leaf, now, policy.renew_fraction):
        reason = "the serving certificate is due for renewal"
    elif _outlives(leaf, now, policy.cert_validity):
        reason = "the configured validity is shorter"
    if not reason:
        return None, ""
    expired = now >= leaf.not_valid_after_utc
    if not expired and trusted is not None and fingerprint(newest) not in {fingerprint(c) for c in trusted}:
        return None, ""  # step 2 waits until the API server trusts the newest CA
    cert, key = new_serving_cert(data[CA_CERT], data[CA_KEY], names, now, policy.cert_validity)
    # ca.crt starts with the newest CA, whose key is ca.key.
    return {**data, TLS_CERT: cert, TLS_KEY: key}, f"renewed the serving certificate: {reason}"


def self_signed(hosts: Sequence[str], now: dt.datetime, validity: float) -> tuple[bytes, bytes]:
    """A self-signed certificate that is its own CA, for ``hosts`` (IP addresses or DNS names)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(seconds=validity))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def summary(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return f"serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"


def digest(cert_pem: bytes, key_pem: bytes) -> str:
    return hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()


# --- the Secret and the ValidatingWebhookConfiguration --------------------------------------------------


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CertificateManager:
    """Keeps the Secret ``namespace/secret`` valid and its CA bundle injected into ``configuration``.
    Blocking calls: run :meth:`reconcile` in a worker thread."""

    clients: kube.Clients
    namespace: str
    secret: str
    configuration: str
    service: str
    policy: CertPolicy = CertPolicy()
    may_write: Callable[[], bool] = lambda: True
    clock: Callable[[], dt.datetime] = now_utc

    def read_secret(self) -> tuple[dict[str, bytes] | None, str | None]:
        """The Secret's data (decoded) and resourceVersion; (None, None) when it does not exist."""
        try:
            raw = kube.call(
                self.clients.core.read_namespaced_secret, self.secret, self.namespace, _preload_content=False
            )
        except kube.ApiException as e:
            if e.status == 404:
                return None, None
            raise
        obj = json.loads(raw.data)
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return data, obj["metadata"]["resourceVersion"]

    def _secret_body(self, data: Mapping[str, bytes], resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.secret,
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "meson-operator",
                "app.kubernetes.io/component": "webhook",
            },
        }
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": meta,
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())},
        }

    def read_configuration(self) -> dict[str, Any] | None:
        try:
            raw = kube.call(
                self.clients.admissionregistration.read_validating_webhook_configuration,
                self.configuration,
                _preload_content=False,
            )
        except kube.ApiException as e:
            if e.status == 404:
                return None
            raise
        return json.loads(raw.data)

    @staticmethod
    def trusted(configuration: Mapping[str, Any] | None) -> list[x509.Certificate] | None:
        """The CAs every webhook of the configuration trusts (None: no configuration)."""
        if configuration is None:
            return None
        common: dict[str, x509.Certificate] | None = None
        for webhook in configuration.get("webhooks") or []:
            bundle = (webhook.get("clientConfig") or {}).get("caBundle") or ""
            try:
                certs = {fingerprint(c): c for c in load_bundle(base64.b64decode(bundle))}
            except ValueError:
                certs = {}
            common = certs if common is None else {k: v for k, v in common.items() if k in certs}
        return list((common or {}).values())

    def inject(self, configuration: Mapping[str, Any], bundle: bytes) -> bool:
        """Set every webhook's caBundle to ``bundle``; False when already so. Guarded by the
        configuration's resourceVersion (a concurrent change fails the patch; the next pass retries)."""
        value = base64.b64encode(bundle).decode()
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": configuration["metadata"]["resourceVersion"],
            }
        ]
        for i, webhook in enumerate(configuration.get("webhooks") or []):
            if (webhook.get("clientConfig") or {}).get("caBundle") != value:
                ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": value})
        if len(ops) == 1:
            return False
        kube.call(
            self.clients.admissionregistration.patch_validating_webhook_configuration, self.configuration, ops
        )
        return True

    def reconcile(self) -> dict[str, bytes] | None:
        """One pass: create or rotate the Secret when this replica may write, inject the CA bundle, and
        return the Secret's data (None while it does not exist)."""
        data, version = self.read_secret()
        if not self.may_write():
            return data
        configuration = self.read_configuration()
        names = dns_names(self.service, self.namespace)
        # One step per pass: after a CA renewal the API server is given a pass interval to pick up the new
        # bundle (its webhook configuration is read through an informer) before the serving certificate
        # from the new CA is issued.
        new, reason = plan(data, self.trusted(configuration), names, self.clock(), self.policy)
        if new is not None:
            body = self._secret_body(new, version)
            try:
                if version is None:
                    create = self.clients.core.create_namespaced_secret
                    kube.call(create, self.namespace, body, _preload_content=False)
                else:  # a patch guarded by the resourceVersion read: Helm's labels stay, a race is a 409
                    patch = {"metadata": {"resourceVersion": version}, "data": body["data"]}
                    kube.call(self.clients.core.patch_namespaced_secret, self.secret, self.namespace, patch)
            except kube.ApiException as e:
                if e.status in (409, 404):  # someone else wrote it first: read it again next pass
                    return self.read_secret()[0]
                raise
            data = new
            log.info("webhook certificate: %s (%s)", reason, summary(new[TLS_CERT]))
        if data is not None and configuration is not None and self.inject(configuration, data[CA_CERT]):
            log.info("webhook CA bundle injected into %s", self.configuration)
        return data
