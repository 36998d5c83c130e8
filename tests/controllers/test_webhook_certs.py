"""The operator-managed webhook certificate: issue, renew, two-step CA rotation (pure), and the in-place
reload of the serving certificate by the webhook server (a real TLS listener on loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

from cryptography import x509

from meson.controllers import webhook_certs as wc
from meson.controllers.admission import ReloadingWebhookServer

NAMES = wc.dns_names("meson-webhook", "meson-system")
POLICY = wc.CertPolicy(ca_validity=90, cert_validity=30)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def leaf(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data[wc.TLS_CERT])


def test_first_pass_issues_a_ca_and_a_certificate_for_the_service_names() -> None:
    data, reason = wc.plan(None, None, NAMES, T0, POLICY)
    assert data is not None and "new CA" in reason
    cert = leaf(data)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == NAMES
    assert "meson-webhook.meson-system.svc" in NAMES
    (ca,) = wc.load_bundle(data[wc.CA_CERT])
    cert.verify_directly_issued_by(ca)
    assert wc.plan(data, [ca], NAMES, at(5), POLICY) == (None, "")


def test_serving_certificate_renews_from_the_same_ca_when_a_third_remains() -> None:
    data, _ = wc.plan(None, None, NAMES, T0, POLICY)
    assert data is not None
    ca = wc.load_bundle(data[wc.CA_CERT])
    assert wc.plan(data, ca, NAMES, at(19), POLICY)[0] is None
    renewed, reason = wc.plan(data, ca, NAMES, at(21), POLICY)
    assert renewed is not None and "due for renewal" in reason
    assert renewed[wc.CA_CERT] == data[wc.CA_CERT]
    assert leaf(renewed).serial_number != leaf(data).serial_number
    leaf(renewed).verify_directly_issued_by(ca[0])


def test_ca_rotation_publishes_the_new_ca_before_any_certificate_uses_it() -> None:
    data, _ = wc.plan(None, None, NAMES, T0, POLICY)
    assert data is not None
    old_ca = wc.load_bundle(data[wc.CA_CERT])
    data, _ = wc.plan(data, old_ca, NAMES, at(50), POLICY)  # the serving certificate renewed on time
    assert data is not None
    # 61 s: less than a third of the CA's 90 s remains. Step 1: a new CA next to the old; same certificate.
    step1, reason = wc.plan(data, old_ca, NAMES, at(61), POLICY)
    assert step1 is not None and "renewed the CA" in reason
    bundle = wc.load_bundle(step1[wc.CA_CERT])
    assert len(bundle) == 2 and wc.fingerprint(bundle[1]) == wc.fingerprint(old_ca[0])
    assert step1[wc.TLS_CERT] == data[wc.TLS_CERT]
    # Until the API server trusts the new CA, no certificate from it is served.
    assert wc.plan(step1, old_ca, NAMES, at(62), POLICY)[0] is None
    step2, reason = wc.plan(step1, bundle, NAMES, at(62), POLICY)
    assert step2 is not None and "CA was renewed" in reason
    leaf(step2).verify_directly_issued_by(bundle[0])
    # The old CA leaves the bundle once expired.
    step3, reason = wc.plan(step2, bundle, NAMES, at(91), POLICY)
    assert step3 is not None and "expired CAs" in reason
    assert len(wc.load_bundle(step3[wc.CA_CERT])) == 1


def test_changed_service_names_reissue_and_garbage_is_replaced() -> None:
    data, _ = wc.plan(None, None, NAMES, T0, POLICY)
    assert data is not None
    ca = wc.load_bundle(data[wc.CA_CERT])
    other = wc.dns_names("other", "meson-system")
    new, reason = wc.plan(data, ca, other, at(1), POLICY)
    assert new is not None and "names changed" in reason
    fresh, reason = wc.plan({wc.TLS_CERT: b"junk"}, None, NAMES, T0, POLICY)
    assert fresh is not None and "new CA" in reason


def test_server_reloads_its_certificate_in_place() -> None:
    async def scenario() -> list[int]:
        server = ReloadingWebhookServer(addr="127.0.0.1", port=0)
        server.port = server._allocate_free_port()
        first, _ = wc.plan(None, None, ["localhost"], wc.now_utc(), wc.CertPolicy())
        assert first is not None
        server.load(first[wc.TLS_CERT], first[wc.TLS_KEY])
        assert not server.load(first[wc.TLS_CERT], first[wc.TLS_KEY])  # unchanged: nothing to do

        async def fn(*_a, **_k):  # pragma: no cover - no request is sent
            return {}

        gen = server(fn)
        await gen.__anext__()  # listening
        ctx = ssl.create_default_context(cadata=first[wc.CA_CERT].decode())
        serials = []

        async def served() -> int:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"
            )
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            return x509.load_der_x509_certificate(der).serial_number

        serials.append(await served())
        cert, key = wc.new_serving_cert(
            first[wc.CA_CERT], first[wc.CA_KEY], ["localhost"], wc.now_utc(), 3600
        )
        second = {**first, wc.TLS_CERT: cert, wc.TLS_KEY: key}
        assert server.load(second[wc.TLS_CERT], second[wc.TLS_KEY])
        serials.append(await served())
        await gen.aclose()
        return [leaf(first).serial_number, leaf(second).serial_number, *serials]

    a, b, served_first, served_second = asyncio.run(scenario())
    assert (served_first, served_second) == (a, b)


def test_a_lowered_validity_renews_the_ca_then_the_certificate() -> None:
    data, _ = wc.plan(None, None, NAMES, T0, wc.CertPolicy())
    assert data is not None
    step1, reason = wc.plan(data, wc.load_bundle(data[wc.CA_CERT]), NAMES, at(1), POLICY)
    assert step1 is not None and "renewed the CA" in reason
    bundle = wc.load_bundle(step1[wc.CA_CERT])
    step2, reason = wc.plan(step1, bundle, NAMES, at(2), POLICY)
    assert step2 is not None and "CA was renewed" in reason
    assert leaf(step2).not_valid_after_utc == at(2) + dt.timedelta(seconds=30)
    assert wc.plan(step2, bundle, NAMES, at(3), POLICY) == (None, "")
