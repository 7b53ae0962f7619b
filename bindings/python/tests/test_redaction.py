"""No string form of a type that holds a secret shows it (#12 item 14)."""

import sessionkit as sk
from conftest import Server

SECRETS = ["hunter2-password", "k" * 64, "eyJhbGciOiJIUzI1NiJ9.e30.sig", '{"secret": "payload"}',
           "90210417"]


def test_str_and_repr_redact_every_secret() -> None:
    key = bytes(range(32))
    objects = [
        sk.Credentials.EMAIL_PASSWORD(email="ada@example.com", password=SECRETS[0]),
        sk.Credentials.EMAIL_OTP(email="ada@example.com", code=SECRETS[4]),
        sk.Credentials.API_KEY(key=SECRETS[1]),
        sk.Credentials.JWT(token=SECRETS[2]),
        sk.Credentials.FUNCTION(payload_json=SECRETS[3]),
        sk.ApiKey(id="abc", key=SECRETS[1], name="ci", disabled=False),
        sk.StorageConfig.FILE(dir="/tmp/s", encryption_key=key),
        sk.AppConfig(app_id="a", base_url="http://127.0.0.1:1",
                     storage=sk.StorageConfig.FILE(dir="/tmp/s", encryption_key=key)),
    ]
    for obj in objects:
        for text in (str(obj), repr(obj), f"{obj}", f"{obj!r}", str([obj])):
            for secret in SECRETS + [str(key), repr(key), key.hex()]:
                assert secret not in text, f"{type(obj).__name__} shows a secret: {text}"
        assert "<redacted>" in str(obj), str(obj)
    # What is not secret still reads.
    assert "ada@example.com" in str(objects[0])
    # The one-time code (#23): the address reads, the code never does.
    assert str(objects[1]) == "Credentials.EMAIL_OTP(email='ada@example.com', code=<redacted>)"
    assert "name='ci'" in str(objects[5])
    assert str(sk.ApiKey(id="abc", key=None, name="ci", disabled=True)) == (
        "ApiKey(id='abc', key=None, name='ci', disabled=True)"
    )
