"""WeChat's push signatures and encrypted push mode: every signature WeChat puts on a push,
and opening an encrypted one.

Every push URL carries ``signature`` (:func:`wechat_signature`), the hex SHA-1 of the
account's Token, ``timestamp`` and ``nonce`` sorted and concatenated.

In encrypted mode (安全模式, ``encrypt_type=aes``) the body is ``<xml><ToUserName/><Encrypt>…</Encrypt></xml>`` and the query
string carries ``msg_signature``, the hex SHA-1 of the account's Token, ``timestamp``,
``nonce`` and the ``Encrypt`` text sorted and concatenated. Unlike plaintext mode's
``signature``, it covers the message, so a signed URL cannot be reused with another body.

``Encrypt`` is base64 of AES-256-CBC over ``random(16) + length(4, big-endian) + xml +
appid``, padded PKCS#7 to a multiple of 32 bytes. The key is the account's
EncodingAESKey (43 characters) base64-decoded with one ``=`` appended, and the IV is the
key's first 16 bytes (WeChat's published WXBizMsgCrypt scheme; wechatpy's
``WeChatCrypto`` does the same). The appid at the end must be the channel's, so a push
encrypted for another account sharing the key is refused.

The AES itself is the ``cryptography`` package's; nothing here implements a cipher.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: WeChat pads to this many bytes (not AES's block size of 16).
PAD_BLOCK = 32
#: Length of an EncodingAESKey as the account's settings page shows it.
AES_KEY_CHARS = 43


class PushDecryptError(ValueError):
    """An encrypted push that cannot be opened; ``status`` is the HTTP answer for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sorted_sha1(*parts: str) -> str:
    """WeChat's signature scheme, shared by both modes: the hex SHA-1 of ``parts`` sorted
    (as strings) and concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def sorted_sha1_matches(parts: tuple[str, ...], signature: str) -> bool:
    """True when ``signature`` is :func:`sorted_sha1` of ``parts`` (any case), compared in
    constant time."""
    return hmac.compare_digest(sorted_sha1(*parts).encode("ascii"), signature.strip().lower().encode("utf-8"))


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's ``signature`` of a push URL (both modes): hex SHA-1 of ``token``,
    ``timestamp`` and ``nonce`` sorted (as strings) and concatenated."""
    return sorted_sha1(token, timestamp, nonce)


def wechat_signature_valid(token: str, timestamp: str, nonce: str, signature: str) -> bool:
    """True when ``signature`` is WeChat's for these values, compared in constant time."""
    return sorted_sha1_matches((token, timestamp, nonce), signature)


def msg_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """WeChat's ``msg_signature`` for an encrypted push."""
    return sorted_sha1(token, timestamp, nonce, encrypted)


def msg_signature_valid(token: str, timestamp: str, nonce: str, encrypted: str, signature: str) -> bool:
    """True when ``signature`` is the ``msg_signature`` of these values (constant time)."""
    return sorted_sha1_matches((token, timestamp, nonce, encrypted), signature)


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of an EncodingAESKey; ValueError for a malformed one (the
    operator pasted something else), naming what is wrong without echoing it."""
    text = encoding_aes_key.strip()
    if len(text) != AES_KEY_CHARS:
        raise ValueError(f"an EncodingAESKey has {AES_KEY_CHARS} characters, this one has {len(text)}")
    try:
        key = base64.b64decode(text + "=", validate=True)
    except binascii.Error:
        raise ValueError("an EncodingAESKey is letters and digits only") from None
    return key


def decrypt_push(encrypted: str, *, key: bytes, appid: str) -> bytes:
    """The XML inside ``Encrypt``; :class:`PushDecryptError` (400) when it is not WeChat's
    format under this key, (403) when it was encrypted for another appid."""
    try:
        sealed = base64.b64decode(encrypted, validate=True)
    except binascii.Error:
        raise PushDecryptError(400, "Encrypt: not base64") from None
    if not sealed or len(sealed) % PAD_BLOCK:
        raise PushDecryptError(400, f"Encrypt: length is not a multiple of {PAD_BLOCK} bytes")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise PushDecryptError(400, "Encrypt: bad padding (wrong EncodingAESKey?)")
    content = plain[16:-pad]  # the first 16 bytes are random
    if len(content) < 4:
        raise PushDecryptError(400, "Encrypt: too short")
    (length,) = struct.unpack(">I", content[:4])
    if length > len(content) - 4:
        raise PushDecryptError(400, "Encrypt: message length out of range (wrong EncodingAESKey?)")
    xml, sender = content[4:4 + length], content[4 + length:]
    if not hmac.compare_digest(sender, appid.encode("utf-8")):
        raise PushDecryptError(403, "Encrypt: the push was encrypted for another appid")
    return xml
