"""Encryption of the few secrets the panel must keep (SASL passwords).

The key lives in a 0600 file outside the database (WEBKVM_CREDENTIAL_KEY_FILE), so a
database dump alone reveals no password.
"""

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from webkvm.config import private_file


def _fernet() -> Fernet:
    return Fernet(private_file(settings.WEBKVM_CREDENTIAL_KEY_FILE, Fernet.generate_key()))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("stored credential cannot be decrypted with the current key file") from None
