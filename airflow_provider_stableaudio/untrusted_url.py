"""What an audio URL from the API's answer may reach, and what its answer must look like to be a clip.

The URL is input from outside: a compromised or confused service, or anything between it and the
worker, could point it at ``file://``, at the cloud's metadata address or at a sign-in page. So the
scheme is checked, the host's addresses are checked before any connection is made, and the answer's
first bytes are checked before anything is stored. No Airflow imports; nothing here touches the
network except :func:`resolve`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_provider_stableaudio.exceptions import StableAudioDownloadError

LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
PRIVATE = "private"
# Types a clip is served as besides audio/*: the AI/ML API's CDN serves its WAV as octet-stream,
# S3 labels untyped uploads binary/octet-stream; no type at all is read the same way.
BINARY_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/ogg"})
# How an audio file begins (WAV, RF64, AIFF, MP3 with a tag, FLAC, Ogg, WebM/Matroska, CAF, AMR,
# Sun/NeXT): such a body is a clip even when its first bytes happen to be printable.
AUDIO_SIGNATURES = (
    b"RIFF",
    b"RIFX",
    b"RF64",
    b"FORM",
    b"ID3",
    b"fLaC",
    b"OggS",
    b"\x1aE\xdf\xa3",
    b"caff",
    b"#!AMR",
    b".snd",
)
# The bytes text is made of; a body whose first SNIFF_BYTES are all of them is a page, not audio.
_TEXT_BYTES = bytes({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x7F)) | set(range(0x80, 0x100)))
SNIFF_BYTES = 512


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` has, as the system resolver says (an IP literal is its own address,
    without a lookup). Tests replace this function: they never send a DNS query.

    :raises OSError: the name could not be resolved (``socket.gaierror``).
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_kind(address: str) -> str | None:
    """:data:`LOOPBACK`, :data:`LINK_LOCAL` or :data:`PRIVATE` (any other address that is not
    public: RFC 1918, unique-local, carrier-grade NAT, reserved, multicast); ``None`` when public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address: fe80::1%eth0
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if ip.is_loopback or ip.is_unspecified:  # a connection to 0.0.0.0 reaches this host
        return LOOPBACK
    if ip.is_link_local:
        return LINK_LOCAL
    if not ip.is_global or ip.is_multicast:
        return PRIVATE
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs a connection may fetch audio from.

    :param schemes: ``https``, and ``http`` too when the connection's own Base URL is plain http.
    :param own_kinds: the kinds of non-public address the connection's own host has: an audio URL
        may reach those (an emulator on loopback serves its clips there), and no others.
    """

    schemes: tuple[str, ...]
    own_kinds: frozenset[str]

    @classmethod
    def for_connection(cls, base_url: str) -> UrlPolicy:
        """The policy of a connection whose Base URL is ``base_url`` (its host resolved once)."""
        parts = urlsplit(base_url)
        schemes = ("https", "http") if parts.scheme == "http" else ("https",)
        try:
            addresses = resolve(parts.hostname or "", parts.port or 443)
        except (OSError, UnicodeError):
            addresses = []  # unresolvable: public addresses only
        kinds = {address_kind(address) for address in addresses}
        return cls(schemes=schemes, own_kinds=frozenset(kind for kind in kinds if kind is not None))

    def check_url(self, url: str) -> tuple[str, int]:
        """``(host, port)`` of ``url`` when its scheme may be fetched.

        :raises StableAudioDownloadError: another scheme (``file``, ``ftp``, ``javascript``...), or
            no host.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        allowed = " or ".join(self.schemes)
        if scheme not in self.schemes:
            raise StableAudioDownloadError(
                f"refused to fetch the audio URL {url!r}: its scheme is {scheme or 'missing'!r}, "
                f"not {allowed} (http only when the connection's own Base URL is http)"
            )
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            port = -1
        if not parts.hostname or port < 0:
            raise StableAudioDownloadError(f"refused to fetch the audio URL {url!r}: it has no valid host")
        return parts.hostname, port

    def check_addresses(self, url: str, host: str, addresses: list[str]) -> None:
        """Refuse ``url`` unless every address of its ``host`` is public or of the connection's own kind.

        :raises StableAudioDownloadError: a loopback, link-local or private address the connection's
            host is not one of, or no address at all.
        """
        if not addresses:
            raise StableAudioDownloadError(f"refused to fetch the audio URL {url!r}: {host} has no address")
        for address in addresses:
            kind = address_kind(address)
            if kind is not None and kind not in self.own_kinds:
                raise StableAudioDownloadError(
                    f"refused to fetch the audio URL {url!r}: {host} is {address}, a {kind} address, "
                    "and the connection's own host is not one (an audio URL may reach a non-public "
                    "address only of the kind the connection's Base URL has)"
                )


def check_audio_answer(url: str, content_type: str | None, head: bytes) -> None:
    """Refuse an answer that is not a clip: another type than audio (an HTML sign-in page), or,
    served as bytes of no particular type, a body that begins as text and not as an audio file.

    :param content_type: the answer's ``Content-Type`` (parameters are ignored).
    :param head: the body's first bytes (its first chunk).
    :raises StableAudioDownloadError: the answer is not audio.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media.startswith("audio/") and media not in BINARY_TYPES:
        raise StableAudioDownloadError(
            f"refused the answer of {url}: HTTP 200 with Content-Type {media!r}, not audio; "
            "nothing was stored"
        )
    if not head:
        raise StableAudioDownloadError(f"refused the answer of {url}: HTTP 200 with an empty body")
    sample = head[:SNIFF_BYTES]
    if not sample.startswith(AUDIO_SIGNATURES) and not sample.translate(None, _TEXT_BYTES):
        raise StableAudioDownloadError(
            f"refused the answer of {url}: its body begins as text ({sample[:60]!r}), not as audio; "
            "nothing was stored"
        )
