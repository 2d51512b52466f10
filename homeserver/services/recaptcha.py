"""The ``m.login.recaptcha`` stage of user-interactive auth (spec v1.19 client-server "Authentication types",
"Google ReCaptcha": the client sends the captcha's ``response``), checked as Synapse does.

The homeserver POSTs the form ``secret`` (``recaptcha_private_key``), ``response`` and ``remoteip`` (the
client's address) to ``recaptcha_siteverify_api``, and nowhere else (federation/origin_client.py); the stage
passes only on a 200 answer whose JSON object holds ``"success": true``.
"""

from __future__ import annotations

import json
import logging

from homeserver.errors import MatrixError

RECAPTCHA_STAGE = "m.login.recaptcha"

logger = logging.getLogger(__name__)


class RecaptchaVerifier:
    """The site's reCAPTCHA keys and the client of its siteverify URL (an ``OriginClient``)."""

    def __init__(self, *, client, private_key: str, public_key: str | None):
        self._client = client
        self._private_key = private_key
        self.public_key = public_key

    def params(self) -> dict:
        """The stage's ``params`` in a 401 of user-interactive auth."""
        return {"public_key": self.public_key}

    async def verify(self, response, client_ip: str | None) -> None:
        """Raises MatrixError unless the siteverify API accepts ``response``: 400 M_CAPTCHA_NEEDED without a
        response, 401 M_UNAUTHORIZED when refused or when the API cannot be asked (as Synapse)."""
        if not isinstance(response, str) or not response:
            raise MatrixError(400, "M_CAPTCHA_NEEDED", "Captcha response is required")
        form = {"secret": self._private_key, "response": response}
        if client_ip:
            form["remoteip"] = client_ip
        try:
            answer = json.loads(await self._client.post_form(form))
        except ConnectionError as e:   # federation/origin_client.py's OriginUnreachable
            logger.warning("reCAPTCHA: cannot check a captcha: %s", e)
            raise MatrixError(401, "M_UNAUTHORIZED", "The captcha could not be checked") from None
        except ValueError:
            logger.warning("reCAPTCHA: the siteverify API answered something other than JSON")
            raise MatrixError(401, "M_UNAUTHORIZED", "The captcha could not be checked") from None
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise MatrixError(401, "M_UNAUTHORIZED", "Captcha authentication failed")
