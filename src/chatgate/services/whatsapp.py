"""WhatsApp numbers: connect (validated at Meta or Twilio), route shared webhooks, the 24-hour window.

One Meta app sends the webhooks of all its numbers to one URL, and one Twilio URL may serve
many senders, so inbound requests are routed by the number they concern: Meta's
`metadata.phone_number_id`, Twilio's `To` (or `MessagingServiceSid`).
"""

from __future__ import annotations

import secrets
from typing import Any

from chatgate.domain.clock import Clock
from chatgate.domain.errors import AuthRevoked, Conflict, InvalidInput, NotFound, PermanentProviderError
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.base import InboundRequest, IntegrationRef
from chatgate.providers.twilio.adapter import TwilioAdapter
from chatgate.providers.twilio.outbound import sender_from_config
from chatgate.providers.whatsapp_cloud.adapter import WhatsAppCloudAdapter
from chatgate.services.integrations import IntegrationChanges, IntegrationService
from chatgate.services.provider_context import ProviderContexts, ref_of
from chatgate.store.db import Database
from chatgate.store.models import Integration
from chatgate.store.repositories.integrations import IntegrationRouting

# What a reconnect may replace: the secrets that expire or get rotated, not the identity.
RECONNECT_CREDENTIALS = {
    IntegrationKind.WHATSAPP_CLOUD: frozenset({"access_token", "app_secret"}),
    IntegrationKind.TWILIO: frozenset(
        {"auth_token", "auth_token_previous", "api_key_sid", "api_key_secret", "webhook_signing_secret"}
    ),
}


def _pending_ref(tenant_id: str, kind: IntegrationKind, config: dict[str, Any]) -> IntegrationRef:
    return IntegrationRef("int_pending", tenant_id, kind, "pending", config)


class WhatsAppIntegrations:
    def __init__(
        self,
        db: Database,
        integrations: IntegrationService,
        contexts: ProviderContexts,
        cloud: WhatsAppCloudAdapter,
        twilio: TwilioAdapter,
        clock: Clock,
    ) -> None:
        self.db = db
        self.integrations = integrations
        self.contexts = contexts
        self.cloud = cloud
        self.twilio = twilio
        self.clock = clock

    async def _refuse_taken(self, tenant_id: str, kind: IntegrationKind, key: str, what: str) -> None:
        async with self.db.sessions() as session:
            existing = await IntegrationRouting(session).by_provider_key(kind, key)
        if existing is not None:
            if existing.tenant_id == tenant_id:
                raise Conflict(f"{what} is already connected here (integration {existing.id})")
            raise Conflict(f"{what} is connected to another account; disconnect it there first")

    # --- connect ----------------------------------------------------------------------------

    async def connect_cloud(
        self, tenant_id: str, name: str, config: dict[str, Any], credentials: dict[str, str]
    ) -> Integration:
        number = str(config.get("phone_number_id") or "").strip()
        if not number.isdigit():
            raise InvalidInput("config.phone_number_id is required (the number's id in Meta's dashboard)")
        for field in ("access_token", "app_secret"):
            if not credentials.get(field):
                raise InvalidInput(f"credentials.{field} is required")
        credentials = dict(credentials)
        # The verify token only answers Meta's subscription handshake (the app secret is what
        # authenticates deliveries); it is shown in config so it can be pasted into Meta's dashboard.
        # One chosen in config (or credentials) is kept; otherwise one is generated.
        verify_token = (
            credentials.get("verify_token")
            or str(config.get("verify_token") or "").strip()
            or secrets.token_urlsafe(24)
        )
        credentials["verify_token"] = verify_token
        config = {**config, "phone_number_id": number, "verify_token": verify_token}
        self.integrations.redactor.register(credentials["access_token"], credentials["app_secret"])
        ctx = self.contexts.build(
            _pending_ref(tenant_id, IntegrationKind.WHATSAPP_CLOUD, config), credentials
        )
        try:
            info = await self.cloud.validate_number(ctx)
        except AuthRevoked as exc:
            raise InvalidInput(f"Meta refused the access token: {exc.message}") from None
        except NotFound:
            raise InvalidInput(f"Meta knows no phone number {number} for this access token") from None
        await self._refuse_taken(
            tenant_id, IntegrationKind.WHATSAPP_CLOUD, number, f"WhatsApp number {number}"
        )
        config["display_phone_number"] = info.get("display_phone_number")
        config["verified_name"] = info.get("verified_name")
        integration = await self.integrations.create(
            tenant_id,
            kind=IntegrationKind.WHATSAPP_CLOUD,
            name=name,
            config=config,
            credentials=credentials,
            provider_key=number,
        )
        return await self.integrations.set_status(tenant_id, integration.id, IntegrationStatus.ACTIVE, None)

    async def connect_twilio(
        self, tenant_id: str, name: str, config: dict[str, Any], credentials: dict[str, str]
    ) -> Integration:
        config = dict(config)
        if config.get("whatsapp_number") and not config.get("from"):  # seed 000's field name
            config["from"] = "whatsapp:" + str(config.pop("whatsapp_number")).removeprefix("whatsapp:")
        if credentials.get("account_sid") and not config.get("account_sid"):
            config["account_sid"] = credentials["account_sid"]
        if not credentials.get("auth_token"):
            raise InvalidInput(
                "credentials.auth_token is required: Twilio signs its webhooks with it "
                "(api_key_sid/api_key_secret may be added for API calls)"
            )
        try:
            sender = sender_from_config(config, credentials)
        except PermanentProviderError as exc:
            raise InvalidInput(exc.message) from None
        config["channel"] = sender.channel
        if sender.from_address:
            config["from"] = sender.from_address
        self.integrations.redactor.register(*credentials.values())
        ctx = self.contexts.build(_pending_ref(tenant_id, IntegrationKind.TWILIO, config), credentials)
        try:
            account = await self.twilio.validate_account(ctx)
        except (AuthRevoked, NotFound) as exc:
            raise InvalidInput(exc.message) from None
        key = sender.from_address or str(sender.messaging_service_sid)
        await self._refuse_taken(tenant_id, IntegrationKind.TWILIO, key, f"the Twilio sender {key}")
        config["account_name"] = account.get("friendly_name")
        integration = await self.integrations.create(
            tenant_id,
            kind=IntegrationKind.TWILIO,
            name=name,
            config=config,
            credentials=credentials,
            provider_key=key,
        )
        return await self.integrations.set_status(tenant_id, integration.id, IntegrationStatus.ACTIVE, None)

    # --- reconnect ------------------------------------------------------------------------

    async def reconnect(self, integration: Integration, credentials: dict[str, str] | None) -> Integration:
        """Check the number (Meta) or the account (Twilio) again, with new credentials merged over
        the stored ones when given, and make the integration active again (after needs_reauth)."""
        kind = IntegrationKind(integration.kind)
        if integration.status == IntegrationStatus.DISABLED:
            raise InvalidInput("this integration is disabled: re-enable it first")
        given = {key: value for key, value in (credentials or {}).items() if value}
        unknown = sorted(set(given) - RECONNECT_CREDENTIALS[kind])
        if unknown:
            raise InvalidInput(
                f"credentials {', '.join(unknown)} cannot be changed here; "
                f"allowed: {', '.join(sorted(RECONNECT_CREDENTIALS[kind]))}"
            )
        stored = await self.integrations.credentials(integration)
        merged = {**stored, **given}
        self.integrations.redactor.register(*given.values())
        ctx = self.contexts.build(ref_of(integration), merged)
        try:
            if kind == IntegrationKind.WHATSAPP_CLOUD:
                await self.cloud.validate_number(ctx)
            else:
                await self.twilio.validate_account(ctx)
        except (AuthRevoked, NotFound) as exc:
            raise InvalidInput(exc.message) from None
        if merged != stored:
            await self.integrations.update(
                integration.tenant_id, integration.id, IntegrationChanges(credentials=merged)
            )
        if integration.status != IntegrationStatus.ACTIVE:  # needs_reauth and error go through pending
            await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.PENDING, None
            )
        return await self.integrations.set_status(
            integration.tenant_id, integration.id, IntegrationStatus.ACTIVE, None
        )

    # --- inbound routing --------------------------------------------------------------------

    async def handshake(self, integration: Integration, query: dict[str, str]) -> str:
        """Meta's GET subscription check: echo hub.challenge for the right verify token."""
        ctx = await self.contexts.for_integration(integration)
        return self.cloud.verify_subscription(query, ctx)

    async def route_twilio(self, request: InboundRequest) -> Integration:
        """The integration a shared Twilio webhook belongs to: by `To`, then `MessagingServiceSid`."""
        to, service = self.twilio.routing_keys(request.body)
        async with self.db.sessions() as session:
            routing = IntegrationRouting(session)
            for key in (to, service):
                if key:
                    found = await routing.by_provider_key(IntegrationKind.TWILIO, key)
                    if found is not None:
                        return found
        raise NotFound(f"no Twilio integration for To={to!r} / MessagingServiceSid={service!r}")
