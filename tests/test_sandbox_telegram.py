"""The simulated Telegram Bot API (chatgate.sandbox.telegram_bot_api), exercised over real HTTP.

Every test serves a fresh sandbox on 127.0.0.1 (tests/asgi_server.py) and talks to it with
httpx; webhooks are received by an aiohttp app started on 127.0.0.1 by the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from chatgate.sandbox.telegram_bot_api import SandboxBotApi, Validator, formatting, load_spec
from tests.asgi_server import serve_asgi

UPDATES_DIR = Path(__file__).parent / "contracts" / "telegram-updates" / "updates"
SHAPES = Validator(load_spec())
USER = {"id": 4242, "is_bot": False, "first_name": "Ann", "username": "ann_user"}
GROUP_ID = -4001
SUPERGROUP_ID = -1004001
CHANNEL_ID = -1005001


# -- harness ------------------------------------------------------------------------------------


@dataclass
class Env:
    api: SandboxBotApi
    http: httpx.AsyncClient

    async def control(self, verb: str, path: str, *, expect: int | None = None, **kwargs: Any) -> Any:
        response = await self.http.request(verb, path, **kwargs)
        if expect is None:
            assert response.status_code < 300, response.text
        else:
            assert response.status_code == expect, response.text
        return response.json()

    async def new_bot(self, **body: Any) -> Bot:
        created = await self.control("POST", "/sandbox/bots", json=body, expect=201)
        return Bot(self, created["id"], created["token"], created["username"])

    async def wait_deliveries(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.control("POST", "/sandbox/deliveries/wait", json={"timeout": 20})
        return answer


@dataclass
class Bot:
    env: Env
    id: int
    token: str
    username: str

    async def call(self, method: str, **params: Any) -> httpx.Response:
        return await self.env.http.post(f"/bot{self.token}/{method}", json=params)

    async def ok(self, method: str, **params: Any) -> Any:
        response = await self.call(method, **params)
        body = response.json()
        assert response.status_code == 200, body
        assert body["ok"] is True, body
        return body["result"]

    async def error(self, method: str, **params: Any) -> tuple[int, str, dict[str, Any] | None]:
        return answer_error(await self.call(method, **params))

    async def chat(self, **description: Any) -> dict[str, Any]:
        created: dict[str, Any] = await self.env.control(
            "POST", f"/sandbox/bots/{self.id}/chats", json=description, expect=201
        )
        return created

    async def inject(self, update: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.env.control(
            "POST", f"/sandbox/bots/{self.id}/updates", json=update, expect=201
        )
        return result

    async def inspect(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.env.control("GET", f"/sandbox/bots/{self.id}")
        return result

    async def messages(self, chat_id: int) -> list[dict[str, Any]]:
        listing = await self.env.control("GET", f"/sandbox/bots/{self.id}/chats/{chat_id}/messages")
        return list(listing["messages"])

    async def private_chat(self, user: dict[str, Any] = USER, **extra: Any) -> int:
        await self.chat(id=user["id"], type="private", first_name=user["first_name"], **extra)
        return int(user["id"])


def answer_error(response: httpx.Response) -> tuple[int, str, dict[str, Any] | None]:
    body = response.json()
    assert body["ok"] is False, body
    assert response.status_code == body["error_code"], (response.status_code, body)
    assert set(body) <= {"ok", "error_code", "description", "parameters"}
    return body["error_code"], body["description"], body.get("parameters")


@asynccontextmanager
async def sandbox_env(**options: Any) -> AsyncIterator[Env]:
    options.setdefault("webhook_retry_delay", 0.01)
    options.setdefault("webhook_timeout", 5)
    api = SandboxBotApi(**options)
    try:
        async with serve_asgi(api.app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield Env(api, http)
    finally:
        await api.aclose()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with sandbox_env() as running:
        yield running


@pytest.fixture
async def bot(env: Env) -> Bot:
    return await env.new_bot(username="gate_test_bot", first_name="Gate")


def user_message(
    text: str, *, chat: dict[str, Any] | None = None, sender: dict[str, Any] = USER
) -> dict[str, Any]:
    private = {"id": sender["id"], "type": "private", "first_name": sender["first_name"]}
    return {"message": {"from": sender, "chat": chat or private, "text": text}}


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once empty
    delay: float = 0.0
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # GET path -> (body, type)

    def update_ids(self) -> list[int]:
        return [body["update_id"] for _, body in self.received]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """An aiohttp app on 127.0.0.1 that records webhook POSTs and serves files for URL sends."""
    state = Receiver(url="")

    async def post(request: web.Request) -> web.Response:
        state.received.append((dict(request.headers), await request.json()))
        if state.delay:
            await asyncio.sleep(state.delay)
        return web.Response(status=state.statuses.pop(0) if state.statuses else 200)

    async def get(request: web.Request) -> web.Response:
        found = state.files.get(request.path)
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", post)
    app.router.add_route("GET", "/{tail:.*}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# -- spec, routing, tokens ----------------------------------------------------------------------


def test_spec_is_compiled_once_with_every_method_and_type() -> None:
    spec = load_spec()
    assert load_spec() is spec
    assert spec.method("SENDMESSAGE") is spec.method("sendMessage")
    send = spec.method("sendMessage")
    assert send is not None
    assert send.fields["chat_id"].required
    assert send.fields["text"].required
    assert len(spec.methods) > 150
    assert len(spec.types) > 300
    assert spec.types["InputMedia"].discriminator == "type"
    assert spec.types["InputMedia"].by_discriminator["photo"] == ("InputMediaPhoto",)
    assert spec.types["ChatMember"].by_discriminator["kicked"] == ("ChatMemberBanned",)
    assert "message" in spec.update_types
    assert "update_id" not in spec.update_types


async def test_tokens_look_like_sandbox_tokens_and_unknown_ones_get_401(env: Env, bot: Bot) -> None:
    assert re.fullmatch(rf"{bot.id}:SANDBOX[A-Za-z0-9_-]{{20,}}", bot.token)
    assert not re.search(r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}", bot.token)
    me = await bot.ok("getMe")
    assert me["id"] == bot.id
    assert me["is_bot"] is True
    assert me["username"] == "gate_test_bot"
    assert me["first_name"] == "Gate"
    SHAPES.check_value("User", me)
    forged = f"{bot.id}:SANDBOXnot-the-real-secret"
    for verb in ("GET", "POST"):
        code, description, _ = answer_error(await env.http.request(verb, f"/bot{forged}/getMe"))
        assert (code, description) == (401, "Unauthorized")


async def test_method_names_are_case_insensitive_and_unknown_methods_get_404(env: Env, bot: Bot) -> None:
    lower = await env.http.get(f"/bot{bot.token}/getme")
    upper = await env.http.post(f"/bot{bot.token}/GETME")
    assert lower.json()["result"]["id"] == upper.json()["result"]["id"] == bot.id
    code, description, _ = await bot.error("sendTelepathy", chat_id=1)
    assert (code, description) == (404, "Not Found")


async def test_parameters_arrive_by_query_form_json_or_multipart(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    url = f"/bot{bot.token}/sendMessage"
    by_query = await env.http.get(url, params={"chat_id": str(chat_id), "text": "query"})
    by_form = await env.http.post(url, data={"chat_id": str(chat_id), "text": "form"})
    by_json = await env.http.post(url, json={"chat_id": chat_id, "text": "json"})
    by_multipart = await env.http.post(
        url, data={"chat_id": str(chat_id)}, files={"text": (None, "multipart")}
    )
    texts = [r.json()["result"]["text"] for r in (by_query, by_form, by_json, by_multipart)]
    assert texts == ["query", "form", "json", "multipart"]
    calls = (await bot.inspect())["calls"]
    assert [c["method"] for c in calls] == ["sendMessage"] * 4
    assert calls[1]["params"] == {"chat_id": chat_id, "text": "form"}  # converted from text
    assert all(isinstance(c["time"], float) and c["ok"] for c in calls)


# -- validation -------------------------------------------------------------------------------


async def test_missing_required_parameters_use_telegram_wording(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    assert (await bot.error("sendMessage", text="hi"))[1] == "Bad Request: chat_id is empty"
    assert (await bot.error("sendMessage", chat_id=chat_id))[1] == "Bad Request: message text is empty"
    assert (await bot.error("sendMessage", chat_id=chat_id, text=""))[
        1
    ] == "Bad Request: message text is empty"
    assert (await bot.error("sendPhoto", chat_id=chat_id))[
        1
    ] == "Bad Request: there is no photo in the request"
    code, description, _ = await bot.error("getChatMember", chat_id=chat_id)
    assert (code, description) == (400, "Bad Request: user_id is empty")
    assert (await bot.error("setWebhook"))[1] == 'Bad Request: parameter "url" is required'


async def test_unknown_parameters_are_rejected(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    code, description, _ = await bot.error("sendMessage", chat_id=chat_id, text="x", colour="red")
    assert (code, description) == (400, 'Bad Request: unknown parameter "colour"')
    response = await env.http.get(f"/bot{bot.token}/getMe", params={"verbose": "1"})
    assert answer_error(response)[1] == 'Bad Request: unknown parameter "verbose"'
    assert (await bot.messages(chat_id)) == []


async def test_wrong_types_name_the_parameter_and_the_expected_type(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    assert (await bot.error("sendMessage", chat_id=True, text="x"))[1] == (
        'Bad Request: parameter "chat_id" must be Integer or String'
    )
    assert (await bot.error("sendMessage", chat_id=chat_id, text=5))[1] == (
        'Bad Request: parameter "text" must be String'
    )
    assert (await bot.error("deleteMessage", chat_id=chat_id, message_id="7"))[1] == (
        'Bad Request: parameter "message_id" must be Integer'
    )
    form = await env.http.post(
        f"/bot{bot.token}/sendMessage",
        data={"chat_id": str(chat_id), "text": "x", "disable_notification": "maybe"},
    )
    assert answer_error(form)[1] == 'Bad Request: parameter "disable_notification" must be Boolean'
    query = await env.http.get(f"/bot{bot.token}/getUpdates", params={"limit": "ten"})
    assert answer_error(query)[1] == 'Bad Request: parameter "limit" must be Integer'
    floats = await env.http.post(
        f"/bot{bot.token}/sendLocation", data={"chat_id": str(chat_id), "latitude": "north", "longitude": "1"}
    )
    assert answer_error(floats)[1] == 'Bad Request: parameter "latitude" must be Float'
    good = await env.http.post(
        f"/bot{bot.token}/sendLocation",
        data={"chat_id": str(chat_id), "latitude": "51.5", "longitude": "-0.1"},
    )
    assert good.json() == {"ok": True, "result": True}  # validated, no behaviour


async def test_arrays_are_json_in_forms_and_real_arrays_in_json(env: Env, bot: Bot) -> None:
    url = f"/bot{bot.token}/getUpdates"
    assert (await env.http.post(url, data={"allowed_updates": '["message"]'})).json()["ok"] is True
    assert (await env.http.post(url, json={"allowed_updates": ["message"]})).json()["ok"] is True
    not_json = await env.http.post(url, data={"allowed_updates": "message"})
    assert answer_error(not_json)[1] == 'Bad Request: can\'t parse JSON in parameter "allowed_updates"'
    wrong_item = await env.http.post(url, json={"allowed_updates": [1]})
    assert answer_error(wrong_item)[1] == 'Bad Request: field "allowed_updates[0]" must be String'
    not_array = await env.http.post(url, json={"allowed_updates": {"message": True}})
    assert answer_error(not_array)[1] == 'Bad Request: parameter "allowed_updates" must be Array of String'


async def test_objects_are_checked_recursively_for_unknown_and_missing_fields(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go", "colour": "red"}]]}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup=keyboard))[1] == (
        'Bad Request: unknown field "reply_markup.inline_keyboard[0][0].colour"'
    )
    nameless = {"inline_keyboard": [[{"callback_data": "go"}]]}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup=nameless))[1] == (
        'Bad Request: field "reply_markup.inline_keyboard[0][0].text" is required'
    )
    bad_type = {"inline_keyboard": [[{"text": 3, "callback_data": "go"}]]}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup=bad_type))[1] == (
        'Bad Request: field "reply_markup.inline_keyboard[0][0].text" must be String'
    )
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_parameters={}))[1] == (
        'Bad Request: field "reply_parameters.message_id" is required'
    )
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup="[]"))[1] == (
        'Bad Request: parameter "reply_markup" must be '
        "InlineKeyboardMarkup or ReplyKeyboardMarkup or ReplyKeyboardRemove or ForceReply"
    )
    # Each member of the reply_markup union is accepted, also JSON-encoded in a form.
    reply_keyboard = {"keyboard": [[{"text": "Yes"}, {"text": "No"}]], "resize_keyboard": True}
    assert "reply_markup" not in await bot.ok(
        "sendMessage", chat_id=chat_id, text="a", reply_markup=reply_keyboard
    )
    await bot.ok("sendMessage", chat_id=chat_id, text="b", reply_markup={"remove_keyboard": True})
    form = await env.http.post(
        f"/bot{bot.token}/sendMessage",
        data={"chat_id": str(chat_id), "text": "c", "reply_markup": json.dumps({"force_reply": True})},
    )
    assert form.json()["ok"] is True


async def test_union_members_are_resolved_by_their_discriminator(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    unknown_kind = [{"type": "hologram", "media": "x"}]
    assert (await bot.error("sendMediaGroup", chat_id=chat_id, media=unknown_kind))[1] == (
        'Bad Request: field "media[0].type" must be one of "audio", "document", "live_photo", "photo", "video"'
    )
    extra_field = [{"type": "photo", "media": "x", "performer": "Band"}]
    assert (await bot.error("sendMediaGroup", chat_id=chat_id, media=extra_field))[1] == (
        'Bad Request: unknown field "media[0].performer"'
    )
    scope_without_chat = {"type": "chat"}
    commands = [{"command": "start", "description": "Start"}]
    assert (await bot.error("setMyCommands", commands=commands, scope=scope_without_chat))[1] == (
        'Bad Request: field "scope.chat_id" is required'
    )
    assert (await bot.error("setMyCommands", commands=commands, scope={"type": "everyone"}))[1].startswith(
        'Bad Request: field "scope.type" must be one of "default", "all_private_chats"'
    )
    assert (
        await bot.ok("setMyCommands", commands=commands, scope={"type": "chat", "chat_id": chat_id}) is True
    )
    button = {"type": "web_app", "text": "Open", "web_app": {"url": "https://example.org/app"}}
    assert await bot.ok("setChatMenuButton", menu_button=button) is True


async def test_input_files_attachments_and_stray_uploads(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    url = f"/bot{bot.token}/sendMediaGroup"
    media = [{"type": "photo", "media": "attach://pic"}, {"type": "photo", "media": "attach://pic2"}]
    files = {"pic": ("a.jpg", b"one", "image/jpeg"), "pic2": ("b.jpg", b"two", "image/jpeg")}
    fine = await env.http.post(url, data={"chat_id": str(chat_id), "media": json.dumps(media)}, files=files)
    assert fine.json()["ok"] is True
    missing = await env.http.post(
        url, data={"chat_id": str(chat_id), "media": json.dumps(media)}, files={"pic": files["pic"]}
    )
    assert answer_error(missing)[1] == 'Bad Request: can\'t find the attached file "pic2" in the request'
    stray = await env.http.post(
        f"/bot{bot.token}/sendMessage",
        data={"chat_id": str(chat_id), "text": "x"},
        files={"bonus": ("x.bin", b"x", "application/octet-stream")},
    )
    assert answer_error(stray)[1] == 'Bad Request: unknown parameter "bonus"'
    file_for_text = await env.http.post(
        f"/bot{bot.token}/sendMessage",
        data={"chat_id": str(chat_id)},
        files={"text": ("t.txt", b"hi", "text/plain")},
    )
    assert answer_error(file_for_text)[1] == 'Bad Request: parameter "text" must be String'
    certificate = await bot.error("setWebhook", url="https://example.org/hook", certificate="not-a-file")
    assert certificate[1].startswith('Bad Request: parameter "certificate" must be InputFile')


async def test_parse_mode_must_be_one_of_telegrams(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    for mode in ("HTML", "Markdown", "MarkdownV2"):
        await bot.ok("sendMessage", chat_id=chat_id, text="plain", parse_mode=mode)
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", parse_mode="html"))[1] == (
        "Bad Request: unsupported parse_mode"
    )
    caption_mode = {"message_id": 1, "quote": "p", "quote_parse_mode": "BBCode"}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_parameters=caption_mode))[1] == (
        'Bad Request: unsupported parse_mode in field "reply_parameters.quote_parse_mode"'
    )


async def test_other_valid_methods_answer_true_after_validation(bot: Bot) -> None:
    assert await bot.ok("setMyDescription", description="A gateway bot") is True
    assert (await bot.error("setMyDescription", descripton="typo"))[
        1
    ] == 'Bad Request: unknown parameter "descripton"'


# -- sending ----------------------------------------------------------------------------------


async def test_send_message_returns_a_spec_shaped_message_and_records_it(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    markup = {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "y"}, {"text": "Docs", "url": "https://example.org"}]
        ]
    }
    message = await bot.ok("sendMessage", chat_id=chat_id, text="Hello", reply_markup=markup)
    SHAPES.check_value("Message", message)
    assert message["text"] == "Hello"
    assert message["chat"]["id"] == chat_id
    assert message["from"]["id"] == bot.id
    assert message["from"]["is_bot"] is True
    assert message["reply_markup"] == markup
    assert abs(message["date"] - time.time()) < 60
    second = await bot.ok("sendMessage", chat_id=str(chat_id), text="Again")
    assert second["message_id"] == message["message_id"] + 1
    stored = await bot.messages(chat_id)
    assert [(m["message_id"], m["outgoing"], m["deleted"]) for m in stored] == [
        (message["message_id"], True, False),
        (second["message_id"], True, False),
    ]
    assert stored[0]["message"]["text"] == "Hello"


async def test_message_length_is_counted_in_utf16_units(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    assert len((await bot.ok("sendMessage", chat_id=chat_id, text="a" * 4096))["text"]) == 4096
    code, description, _ = await bot.error("sendMessage", chat_id=chat_id, text="a" * 4097)
    assert (code, description) == (400, "Bad Request: message is too long")
    await bot.ok("sendMessage", chat_id=chat_id, text="😀" * 2048)  # 4096 UTF-16 units
    assert (await bot.error("sendMessage", chat_id=chat_id, text="😀" * 2049))[1] == (
        "Bad Request: message is too long"
    )
    markup_only = "<b>" + "a" * 4096 + "</b>"  # the limit applies after entities parsing
    await bot.ok("sendMessage", chat_id=chat_id, text=markup_only, parse_mode="HTML")


async def test_parse_modes_produce_entities_or_telegrams_parse_errors(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    html = await bot.ok(
        "sendMessage",
        chat_id=chat_id,
        parse_mode="HTML",
        text='😀 <b>bold <i>both</i></b> &lt;tag&gt; <a href="https://example.org">link</a>',
    )
    assert html["text"] == "😀 bold both <tag> link"
    assert html["entities"] == [
        {"type": "bold", "offset": 3, "length": 9},
        {"type": "italic", "offset": 8, "length": 4},
        {"type": "text_link", "offset": 19, "length": 4, "url": "https://example.org"},
    ]
    markdown = await bot.ok("sendMessage", chat_id=chat_id, text=r"*Hi* \_x\_ `c`\.", parse_mode="MarkdownV2")
    assert markdown["text"] == "Hi _x_ c."
    assert [e["type"] for e in markdown["entities"]] == ["bold", "code"]
    assert (await bot.error("sendMessage", chat_id=chat_id, text="Done.", parse_mode="MarkdownV2"))[1] == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    )
    assert (await bot.error("sendMessage", chat_id=chat_id, text="<div>x</div>", parse_mode="HTML"))[1] == (
        'Bad Request: can\'t parse entities: Unsupported start tag "div" at byte offset 0'
    )
    assert (await bot.error("sendMessage", chat_id=chat_id, text="*open", parse_mode="Markdown"))[1] == (
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
    )
    given = [{"type": "bold", "offset": 0, "length": 2}]
    explicit = await bot.ok("sendMessage", chat_id=chat_id, text="Hi there", entities=given)
    assert explicit["entities"] == given


def test_formatting_helpers_directly() -> None:
    text, entities = formatting.parse('<pre><code class="language-py">x = 1</code></pre>', "HTML")
    assert (text, entities) == ("x = 1", [{"type": "pre", "offset": 0, "length": 5, "language": "py"}])
    text, entities = formatting.parse("__u__ ||s|| ~t~ [l](https://e.org/a\\)b)", "MarkdownV2")
    assert text == "u s t l"
    assert [e["type"] for e in entities] == ["underline", "spoiler", "strikethrough", "text_link"]
    assert entities[-1]["url"] == "https://e.org/a)b"
    assert formatting.parse("<b>x</i>", None) == ("<b>x</i>", [])
    assert formatting.utf16_len("😀a") == 3


async def test_replies_need_an_existing_message_unless_allowed(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    incoming = await bot.inject(user_message("What's the status of my order?"))
    original_id = incoming["update"]["message"]["message_id"]
    reply = await bot.ok(
        "sendMessage",
        chat_id=chat_id,
        text="Shipped",
        reply_parameters={"message_id": original_id, "quote": "status"},
    )
    assert reply["reply_to_message"]["message_id"] == original_id
    assert reply["reply_to_message"]["text"] == "What's the status of my order?"
    assert reply["quote"]["text"] == "status"
    assert reply["quote"]["position"] == 11
    SHAPES.check_value("Message", reply)
    legacy = await bot.ok("sendMessage", chat_id=chat_id, text="Legacy", reply_to_message_id=original_id)
    assert legacy["reply_to_message"]["message_id"] == original_id
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_parameters={"message_id": 999}))[
        1
    ] == ("Bad Request: message to be replied not found")
    lenient = await bot.ok(
        "sendMessage",
        chat_id=chat_id,
        text="x",
        reply_parameters={"message_id": 999, "allow_sending_without_reply": True},
    )
    assert "reply_to_message" not in lenient


async def test_inline_keyboards_are_checked_like_telegram(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    text_only = {"inline_keyboard": [[{"text": "Nothing"}]]}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup=text_only))[1] == (
        "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
    )
    too_long = {"inline_keyboard": [[{"text": "Big", "callback_data": "d" * 65}]]}
    assert (await bot.error("sendMessage", chat_id=chat_id, text="x", reply_markup=too_long))[1] == (
        "Bad Request: BUTTON_DATA_INVALID"
    )


async def test_media_uploads_urls_and_file_ids(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    base = f"/bot{bot.token}"
    uploads = {
        "sendPhoto": ("photo", ("cat.jpg", b"\xff\xd8jpeg-bytes", "image/jpeg")),
        "sendDocument": ("document", ("report.pdf", b"%PDF-1.7 report", "application/pdf")),
        "sendAudio": ("audio", ("song.mp3", b"ID3 song", "audio/mpeg")),
        "sendVideo": ("video", ("clip.mp4", b"mp4 clip", "video/mp4")),
        "sendVoice": ("voice", ("note.ogg", b"OggS voice", "audio/ogg")),
        "sendSticker": ("sticker", ("s.webp", b"RIFF webp", "image/webp")),
    }
    file_ids: dict[str, str] = {}
    for method, (field_name, upload) in uploads.items():
        data = {"chat_id": str(chat_id)}
        if method != "sendSticker":
            data["caption"] = f"a {field_name}"
        answer = (await env.http.post(f"{base}/{method}", data=data, files={field_name: upload})).json()
        assert answer["ok"] is True, answer
        message = answer["result"]
        SHAPES.check_value("Message", message)
        sent = message[field_name][-1] if field_name == "photo" else message[field_name]
        assert sent["file_size"] == len(upload[1])
        file_ids[field_name] = sent["file_id"]
        if method != "sendSticker":
            assert message["caption"] == f"a {field_name}"
    assert (
        await env.http.post(
            f"{base}/sendDocument", json={"chat_id": chat_id, "document": file_ids["document"]}
        )
    ).json()["result"]["document"]["file_name"] == "report.pdf"
    resent = await bot.ok("sendPhoto", chat_id=chat_id, photo=file_ids["photo"])
    assert resent["photo"][-1]["file_id"] == file_ids["photo"]
    assert (await bot.error("sendDocument", chat_id=chat_id, document=file_ids["photo"]))[1] == (
        "Bad Request: type of file mismatch"
    )
    assert (await bot.error("sendPhoto", chat_id=chat_id, photo="no-such-file-id"))[1] == (
        "Bad Request: wrong file identifier/HTTP URL specified"
    )
    assert (await bot.error("sendPhoto", chat_id=chat_id, photo=file_ids["photo"], caption="c" * 1025))[
        1
    ] == ("Bad Request: message caption is too long")
    other = await env.new_bot()
    await other.private_chat()
    assert (await other.error("sendPhoto", chat_id=chat_id, photo=file_ids["photo"]))[1] == (
        "Bad Request: wrong file identifier/HTTP URL specified"
    )


async def test_files_by_url_are_fetched_like_telegram_does(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    png = b"\x89PNG\r\n\x1a\nfake-image"
    async with receiver() as site:
        site.files["/cat.png"] = (png, "image/png")
        site.files["/page.html"] = (b"<html></html>", "text/html")
        origin = site.url.rsplit("/", 1)[0]
        photo = await bot.ok("sendPhoto", chat_id=chat_id, photo=f"{origin}/cat.png")
        size = photo["photo"][-1]
        assert size["file_size"] == len(png)
        info = await bot.ok("getFile", file_id=size["file_id"])
        download = await env.http.get(f"/file/bot{bot.token}/{info['file_path']}")
        assert download.status_code == 200
        assert download.content == png
        assert (await bot.error("sendPhoto", chat_id=chat_id, photo=f"{origin}/missing.png"))[1] == (
            "Bad Request: failed to get HTTP URL content"
        )
        assert (await bot.error("sendPhoto", chat_id=chat_id, photo=f"{origin}/page.html"))[1] == (
            "Bad Request: wrong type of the web page content"
        )


async def test_get_file_download_and_size_limit(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    content = b"quarterly numbers\n" * 100
    answer = (
        await env.http.post(
            f"/bot{bot.token}/sendDocument",
            data={"chat_id": str(chat_id)},
            files={"document": ("numbers.csv", content, "text/csv")},
        )
    ).json()
    file_id = answer["result"]["document"]["file_id"]
    info = await bot.ok("getFile", file_id=file_id)
    SHAPES.check_value("File", info)
    assert info["file_size"] == len(content)
    assert info["file_path"].endswith(".csv")
    download = await env.http.get(f"/file/bot{bot.token}/{info['file_path']}")
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-type"].startswith("text/csv")
    assert (await env.http.get(f"/file/bot{bot.token}/documents/nothing.bin")).status_code == 404
    assert (await env.http.get(f"/file/bot{bot.id}:SANDBOXwrong/{info['file_path']}")).status_code == 401
    other = await env.new_bot()
    assert (await other.error("getFile", file_id=file_id))[1] == (
        "Bad Request: wrong file_id or the file is temporarily unavailable"
    )
    assert (await env.http.get(f"/file/bot{other.token}/{info['file_path']}")).status_code == 404
    big = await env.control("POST", f"/sandbox/bots/{bot.id}/files", json={"size": 25_000_000}, expect=201)
    assert (await bot.error("getFile", file_id=big["file_id"])) == (400, "Bad Request: file is too big", None)
    assert (await bot.error("getFile", file_id="nope"))[1] == (
        "Bad Request: wrong file_id or the file is temporarily unavailable"
    )


async def test_control_api_uploads_become_usable_file_ids(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    uploaded = await env.control(
        "POST",
        f"/sandbox/bots/{bot.id}/files",
        json={
            "content_base64": base64.b64encode(b"hello file").decode(),
            "file_name": "hello.txt",
            "mime_type": "text/plain",
        },
        expect=201,
    )
    assert uploaded["file_size"] == 10
    sent = await bot.ok("sendDocument", chat_id=chat_id, document=uploaded["file_id"])
    assert sent["document"]["file_id"] == uploaded["file_id"]
    assert sent["document"]["file_name"] == "hello.txt"
    multipart = await env.control(
        "POST",
        f"/sandbox/bots/{bot.id}/files",
        files={"file": ("v.ogg", b"OggS", "audio/ogg")},
        data={"kind": "voice"},
        expect=201,
    )
    assert multipart["kind"] == "voice"
    assert (await bot.ok("sendVoice", chat_id=chat_id, voice=multipart["file_id"]))["voice"]["file_size"] == 4
    await env.control("POST", f"/sandbox/bots/{bot.id}/files", json={"size": 0}, expect=400)


async def test_send_chat_action(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    assert await bot.ok("sendChatAction", chat_id=chat_id, action="typing") is True
    assert (await bot.error("sendChatAction", chat_id=chat_id, action="dancing"))[1] == (
        "Bad Request: wrong parameter action in request"
    )
    assert (await bot.error("sendChatAction", chat_id=chat_id))[1] == "Bad Request: action is empty"


# -- editing, deleting, callbacks ---------------------------------------------------------------


async def test_edit_message_text_and_reply_markup(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    keyboard = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    sent = await bot.ok("sendMessage", chat_id=chat_id, text="Draft", reply_markup=keyboard)
    number = sent["message_id"]
    edited = await bot.ok(
        "editMessageText", chat_id=chat_id, message_id=number, text="Final", reply_markup=keyboard
    )
    assert edited["text"] == "Final"
    assert edited["reply_markup"] == keyboard
    assert "edit_date" in edited
    SHAPES.check_value("Message", edited)
    assert (
        await bot.error(
            "editMessageText", chat_id=chat_id, message_id=number, text="Final", reply_markup=keyboard
        )
    )[1].startswith("Bad Request: message is not modified")
    other = {"inline_keyboard": [[{"text": "B", "callback_data": "b"}]]}
    changed = await bot.ok("editMessageReplyMarkup", chat_id=chat_id, message_id=number, reply_markup=other)
    assert changed["reply_markup"] == other
    assert changed["text"] == "Final"
    removed = await bot.ok("editMessageReplyMarkup", chat_id=chat_id, message_id=number)
    assert "reply_markup" not in removed
    assert (await bot.error("editMessageReplyMarkup", chat_id=chat_id, message_id=number))[1].startswith(
        "Bad Request: message is not modified"
    )
    assert (await bot.error("editMessageText", chat_id=chat_id, message_id=9999, text="x"))[1] == (
        "Bad Request: message to edit not found"
    )
    incoming = await bot.inject(user_message("mine"))
    theirs = incoming["update"]["message"]["message_id"]
    assert (await bot.error("editMessageText", chat_id=chat_id, message_id=theirs, text="x"))[1] == (
        "Bad Request: message can't be edited"
    )
    assert (await bot.messages(chat_id))[0]["message"]["text"] == "Final"


async def test_delete_message_rules(bot: Bot) -> None:
    await bot.chat(id=GROUP_ID, type="group", title="Team", status="member")
    group = {"id": GROUP_ID, "type": "group", "title": "Team"}
    mine = await bot.ok("sendMessage", chat_id=GROUP_ID, text="oops")
    assert await bot.ok("deleteMessage", chat_id=GROUP_ID, message_id=mine["message_id"]) is True
    assert (await bot.error("deleteMessage", chat_id=GROUP_ID, message_id=mine["message_id"]))[1] == (
        "Bad Request: message to delete not found"
    )
    theirs = (await bot.inject(user_message("spam", chat=group)))["update"]["message"]["message_id"]
    assert (await bot.error("deleteMessage", chat_id=GROUP_ID, message_id=theirs))[1] == (
        "Bad Request: message can't be deleted"
    )
    await bot.chat(
        id=GROUP_ID, type="group", title="Team", status="administrator", rights={"can_delete_messages": True}
    )
    assert await bot.ok("deleteMessage", chat_id=GROUP_ID, message_id=theirs) is True
    listed = {m["message_id"]: (m["outgoing"], m["deleted"]) for m in await bot.messages(GROUP_ID)}
    assert listed == {mine["message_id"]: (True, True), theirs: (False, True)}


async def test_answer_callback_query_once_per_injected_query(bot: Bot) -> None:
    chat_id = await bot.private_chat()
    sent = await bot.ok(
        "sendMessage",
        chat_id=chat_id,
        text="Pick",
        reply_markup={"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]},
    )
    await bot.inject(
        {
            "callback_query": {
                "id": "cbq-1",
                "from": USER,
                "message": sent,
                "chat_instance": "ci-1",
                "data": "a",
            }
        }
    )
    assert await bot.ok("answerCallbackQuery", callback_query_id="cbq-1", text="Done") is True
    invalid = "Bad Request: query is too old and response timeout expired or query ID is invalid"
    assert (await bot.error("answerCallbackQuery", callback_query_id="cbq-1"))[1] == invalid
    assert (await bot.error("answerCallbackQuery", callback_query_id="cbq-unknown"))[1] == invalid


# -- chats ------------------------------------------------------------------------------------


async def test_get_chat_by_id_and_username(bot: Bot) -> None:
    await bot.chat(
        id=SUPERGROUP_ID, type="supergroup", title="Support", username="support_team", description="Help"
    )
    by_id = await bot.ok("getChat", chat_id=SUPERGROUP_ID)
    by_name = await bot.ok("getChat", chat_id="@Support_Team")
    assert by_id == by_name
    SHAPES.check_value("ChatFullInfo", by_id)
    assert (by_id["id"], by_id["type"], by_id["title"], by_id["description"]) == (
        SUPERGROUP_ID,
        "supergroup",
        "Support",
        "Help",
    )
    private_id = await bot.private_chat()
    private = await bot.ok("getChat", chat_id=private_id)
    SHAPES.check_value("ChatFullInfo", private)
    assert private["first_name"] == "Ann"
    assert "title" not in private
    assert (await bot.error("getChat", chat_id=-999))[1] == "Bad Request: chat not found"
    assert (await bot.error("getChat", chat_id="@nobody_here"))[1] == "Bad Request: chat not found"
    assert (await bot.error("sendMessage", chat_id=-999, text="x"))[1] == "Bad Request: chat not found"


async def test_chat_members_and_administrators(bot: Bot) -> None:
    owner = {"id": 501, "first_name": "Olga"}
    await bot.chat(
        id=SUPERGROUP_ID,
        type="supergroup",
        title="Ops",
        status="administrator",
        rights={"can_delete_messages": True, "can_pin_messages": True},
        members=[
            {"user": owner, "status": "creator"},
            {"user": {"id": 502, "first_name": "Max"}, "status": "member"},
        ],
    )
    me = await bot.ok("getChatMember", chat_id=SUPERGROUP_ID, user_id=bot.id)
    SHAPES.check_value("ChatMember", me)
    assert me["status"] == "administrator"
    assert me["user"]["id"] == bot.id
    assert me["can_delete_messages"] is True
    assert me["can_pin_messages"] is True
    assert me["can_restrict_members"] is False
    assert "can_post_messages" not in me  # a channel-only right
    creator = await bot.ok("getChatMember", chat_id=SUPERGROUP_ID, user_id=501)
    assert creator["status"] == "creator"
    assert creator["user"]["first_name"] == "Olga"
    admins = await bot.ok("getChatAdministrators", chat_id=SUPERGROUP_ID)
    assert sorted(a["user"]["id"] for a in admins) == sorted([501, bot.id])
    for admin in admins:
        SHAPES.check_value("ChatMember", admin)
    assert await bot.ok("getChatMemberCount", chat_id=SUPERGROUP_ID) == 3
    assert (await bot.error("getChatMember", chat_id=SUPERGROUP_ID, user_id=777))[
        1
    ] == "Bad Request: user not found"
    await bot.inject(user_message("hi all", chat={"id": SUPERGROUP_ID, "type": "supergroup", "title": "Ops"}))
    seen = await bot.ok("getChatMember", chat_id=SUPERGROUP_ID, user_id=USER["id"])
    assert seen["status"] == "member"
    assert seen["user"]["username"] == "ann_user"
    private_id = await bot.private_chat()
    assert (await bot.error("getChatAdministrators", chat_id=private_id))[1] == (
        "Bad Request: there are no administrators in the private chat"
    )


async def test_channels_need_posting_rights_and_kicked_bots_are_forbidden(bot: Bot) -> None:
    await bot.chat(
        id=CHANNEL_ID,
        type="channel",
        title="News",
        status="administrator",
        rights={"can_post_messages": False},
    )
    assert (await bot.error("sendMessage", chat_id=CHANNEL_ID, text="x"))[1] == (
        "Bad Request: need administrator rights in the channel chat"
    )
    await bot.chat(
        id=CHANNEL_ID,
        type="channel",
        title="News",
        status="administrator",
        rights={"can_post_messages": True},
    )
    post = await bot.ok("sendMessage", chat_id=CHANNEL_ID, text="Release notes")
    assert post["sender_chat"]["id"] == CHANNEL_ID
    assert "from" not in post
    SHAPES.check_value("Message", post)
    await bot.chat(id=GROUP_ID, type="group", title="Old", status="kicked")
    assert await bot.error("sendMessage", chat_id=GROUP_ID, text="x") == (
        403,
        "Forbidden: bot was kicked from the group chat",
        None,
    )
    await bot.chat(id=SUPERGROUP_ID, type="supergroup", title="Gone", status="left")
    assert (await bot.error("sendMessage", chat_id=SUPERGROUP_ID, text="x"))[1] == (
        "Forbidden: bot is not a member of the supergroup chat"
    )


async def test_blocked_user_gets_403_until_unblocked(bot: Bot) -> None:
    chat_id = await bot.private_chat(blocked=True)
    assert await bot.error("sendMessage", chat_id=chat_id, text="hello") == (
        403,
        "Forbidden: bot was blocked by the user",
        None,
    )
    assert (await bot.error("sendChatAction", chat_id=chat_id, action="typing"))[0] == 403
    # The user unblocks the bot: Telegram sends my_chat_member, which the sandbox applies.
    member_update = {
        "my_chat_member": {
            "chat": {"id": chat_id, "type": "private", "first_name": "Ann"},
            "from": USER,
            "date": 1_700_000_000,
            "old_chat_member": {
                "user": {"id": bot.id, "is_bot": True, "first_name": "Gate"},
                "status": "kicked",
                "until_date": 0,
            },
            "new_chat_member": {
                "user": {"id": bot.id, "is_bot": True, "first_name": "Gate"},
                "status": "member",
            },
        }
    }
    await bot.inject(member_update)
    assert (await bot.ok("sendMessage", chat_id=chat_id, text="welcome back"))["text"] == "welcome back"


async def test_group_migrated_to_a_supergroup(bot: Bot) -> None:
    await bot.chat(id=GROUP_ID, type="group", title="Family", migrated_to=SUPERGROUP_ID)
    code, description, parameters = await bot.error("sendMessage", chat_id=GROUP_ID, text="hi")
    assert (code, description) == (400, "Bad Request: group chat was upgraded to a supergroup chat")
    assert parameters == {"migrate_to_chat_id": SUPERGROUP_ID}
    moved = await bot.ok("sendMessage", chat_id=SUPERGROUP_ID, text="hi")
    assert moved["chat"] == {"id": SUPERGROUP_ID, "type": "supergroup", "title": "Family"}


# -- webhooks ---------------------------------------------------------------------------------


async def test_webhook_delivery_with_secret_header(env: Env, bot: Bot) -> None:
    async with receiver() as hook:
        assert (
            await bot.call("setWebhook", url=hook.url, secret_token="s3cret_Token-1", max_connections=5)
        ).json() == {
            "ok": True,
            "result": True,
            "description": "Webhook was set",
        }
        again = (
            await bot.call("setWebhook", url=hook.url, secret_token="s3cret_Token-1", max_connections=5)
        ).json()
        assert again["description"] == "Webhook is already set"
        first = await bot.inject(user_message("one"))
        second = await bot.inject(user_message("two"))
        assert first["delivery"] == second["delivery"] == "webhook"
        assert (await env.wait_deliveries())["done"] is True
        assert hook.update_ids() == [first["update_id"], second["update_id"]]
        headers, body = hook.received[0]
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret_Token-1"
        assert headers["Content-Type"] == "application/json"
        assert body["message"]["text"] == "one"
        SHAPES.check_value("Update", body)
        info = await bot.ok("getWebhookInfo")
        SHAPES.check_value("WebhookInfo", info)
        assert info["url"] == hook.url
        assert info["pending_update_count"] == 0
        assert info["max_connections"] == 5
        assert "last_error_date" not in info
        inspected = (await bot.inspect())["webhook"]
        assert inspected["secret_token"] == "s3cret_Token-1"


async def test_webhook_failures_are_recorded_like_get_webhook_info(env: Env, bot: Bot) -> None:
    async with receiver() as hook:
        hook.statuses = [401] * 3
        await bot.ok("setWebhook", url=hook.url)
        first = await bot.inject(user_message("one"))
        await env.wait_deliveries()
        info = await bot.ok("getWebhookInfo")
        assert info["last_error_message"] == "Wrong response from the webhook: 401 Unauthorized"
        assert abs(info["last_error_date"] - time.time()) < 60
        assert info["pending_update_count"] == 1
        assert hook.update_ids() == [first["update_id"]] * 3  # three attempts
        second = await bot.inject(user_message("two"))  # the receiver works again
        await env.wait_deliveries()
        assert hook.update_ids()[3:] == [first["update_id"], second["update_id"]]
        info = await bot.ok("getWebhookInfo")
        assert info["pending_update_count"] == 0
        assert (
            info["last_error_message"] == "Wrong response from the webhook: 401 Unauthorized"
        )  # kept, as Telegram does


async def test_webhook_retry_succeeds_after_a_transient_error(env: Env, bot: Bot) -> None:
    async with receiver() as hook:
        hook.statuses = [500]
        await bot.ok("setWebhook", url=hook.url)
        update = await bot.inject(user_message("retry me"))
        await env.wait_deliveries()
        assert hook.update_ids() == [update["update_id"], update["update_id"]]
        info = await bot.ok("getWebhookInfo")
        assert info["pending_update_count"] == 0
        assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"


async def test_webhook_connection_refused_and_timeouts(bot: Bot) -> None:
    async with receiver() as hook:
        closed_url = hook.url
    await bot.ok("setWebhook", url=closed_url)
    await bot.inject(user_message("nobody home"))
    await bot.env.wait_deliveries()
    info = await bot.ok("getWebhookInfo")
    assert info["last_error_message"] == "Connection refused"
    assert info["pending_update_count"] == 1
    async with sandbox_env(webhook_timeout=0.2, webhook_retries=1) as slow_env, receiver() as hook:
        hook.delay = 1.0
        slow_bot = await slow_env.new_bot()
        await slow_bot.ok("setWebhook", url=hook.url)
        await slow_bot.inject(user_message("slow"))
        await slow_env.wait_deliveries()
        info = await slow_bot.ok("getWebhookInfo")
        assert info["last_error_message"] == "Read timeout expired"
        assert info["pending_update_count"] == 1


async def test_webhook_settings_allowed_updates_and_drop_pending(env: Env, bot: Bot) -> None:
    async with receiver() as hook:
        hook.statuses = [503] * 3
        await bot.ok(
            "setWebhook", url=hook.url, allowed_updates=["message", "callback_query"], ip_address="127.0.0.1"
        )
        info = await bot.ok("getWebhookInfo")
        assert info["allowed_updates"] == ["message", "callback_query"]
        assert info["ip_address"] == "127.0.0.1"
        await bot.inject(user_message("kept pending"))
        await env.wait_deliveries()
        assert (await bot.ok("getWebhookInfo"))["pending_update_count"] == 1
        reaction = {
            "message_reaction": {
                "chat": {"id": USER["id"], "type": "private", "first_name": "Ann"},
                "message_id": 1,
                "date": 1,
                "old_reaction": [],
                "new_reaction": [],
            }
        }
        assert (await bot.inject(reaction))["delivery"] == "filtered"
        deleted = (await bot.call("deleteWebhook", drop_pending_updates=True)).json()
        assert deleted == {"ok": True, "result": True, "description": "Webhook was deleted"}
        assert (await bot.call("deleteWebhook")).json()["description"] == "Webhook is already deleted"
        info = await bot.ok("getWebhookInfo")
        assert info == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        assert await bot.ok("getUpdates") == []
    assert (await bot.error("setWebhook", url="https://example.org/h", secret_token="bad token!"))[1] == (
        "Bad Request: secret token contains unallowed characters"
    )
    assert (await bot.error("setWebhook", url="ftp://example.org/h"))[1] == (
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    )
    assert (await bot.error("setWebhook", url="https://example.org/h", allowed_updates=["messages"]))[1] == (
        'Bad Request: unknown update type "messages" in allowed_updates'
    )
    assert (await bot.call("setWebhook", url="")).json()["description"] == "Webhook is already deleted"


async def test_strict_webhook_urls_follow_telegrams_https_and_port_rules() -> None:
    async with sandbox_env(strict_webhook_urls=True) as strict:
        bot = await strict.new_bot()
        assert (await bot.error("setWebhook", url="http://example.org/h"))[1] == (
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
        )
        assert (await bot.error("setWebhook", url="https://example.org:9000/h"))[1] == (
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
        )
        assert await bot.ok("setWebhook", url="https://example.org:8443/h") is True


async def test_every_contract_fixture_update_can_be_injected(env: Env, bot: Bot) -> None:
    accepted = 0
    for path in sorted(UPDATES_DIR.glob("*.json")):
        response = await env.http.post(f"/sandbox/bots/{bot.id}/updates", content=path.read_bytes())
        if path.name == "subscription.json":  # an update kind the spec does not know
            assert response.status_code == 400
            assert "subscription" in response.json()["error"]
            continue
        assert response.status_code == 201, (path.name, response.text)
        accepted += 1
    assert accepted == len(list(UPDATES_DIR.glob("*.json"))) - 1
    updates = await bot.ok("getUpdates", limit=100)
    assert len(updates) == 100
    # chat_member, message_reaction and message_reaction_count are not delivered by default
    kinds = {next(k for k in u if k != "update_id") for u in updates}
    assert not kinds & {"chat_member", "message_reaction", "message_reaction_count"}


# -- getUpdates -------------------------------------------------------------------------------


async def test_get_updates_offset_limit_and_negative_offset(bot: Bot) -> None:
    injected = [await bot.inject(user_message(f"m{i}")) for i in range(4)]
    ids = [u["update_id"] for u in injected]
    assert ids == list(range(ids[0], ids[0] + 4))
    first_two = await bot.ok("getUpdates", limit=2)
    assert [u["update_id"] for u in first_two] == ids[:2]
    SHAPES.check_value("Array of Update", first_two)
    assert [u["update_id"] for u in await bot.ok("getUpdates")] == ids  # nothing confirmed yet
    rest = await bot.ok("getUpdates", offset=ids[1] + 1)
    assert [u["update_id"] for u in rest] == ids[2:]
    assert [u["update_id"] for u in await bot.ok("getUpdates", offset=-1)] == ids[3:]
    assert await bot.ok("getUpdates", offset=ids[3] + 1) == []
    assert (await bot.inspect())["pending_update_count"] == 0
    explicit = await bot.inject({"update_id": 900, **user_message("explicit")})
    assert explicit["update_id"] == 900
    assert (await bot.inject(user_message("next")))["update_id"] == 901


async def test_get_updates_long_poll_returns_as_soon_as_an_update_arrives(env: Env, bot: Bot) -> None:
    poll = asyncio.create_task(bot.call("getUpdates", timeout=30))
    await wait_until(lambda: env.api.bot(bot.id).poll is not None, "the long poll to start")
    await bot.inject(user_message("wake up"))
    response = await asyncio.wait_for(poll, 10)  # far sooner than the 30 s poll timeout
    assert [u["message"]["text"] for u in response.json()["result"]] == ["wake up"]
    started = time.monotonic()
    assert await bot.ok("getUpdates", offset=response.json()["result"][0]["update_id"] + 1, timeout=1) == []
    assert time.monotonic() - started >= 0.9  # it did wait for the timeout


async def test_two_concurrent_long_polls_terminate_the_older(env: Env, bot: Bot) -> None:
    older = asyncio.create_task(bot.call("getUpdates", timeout=30))
    await wait_until(lambda: env.api.bot(bot.id).poll is not None, "the first poll")
    first_poll = env.api.bot(bot.id).poll
    newer = asyncio.create_task(bot.call("getUpdates", timeout=30))
    code, description, _ = answer_error(await asyncio.wait_for(older, 10))
    assert (code, description) == (
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    )
    await wait_until(lambda: env.api.bot(bot.id).poll not in (None, first_poll), "the second poll")
    await bot.inject(user_message("for the newer"))
    assert (await asyncio.wait_for(newer, 10)).json()["result"][0]["message"]["text"] == "for the newer"


async def test_get_updates_conflicts_with_a_webhook(env: Env, bot: Bot) -> None:
    poll = asyncio.create_task(bot.call("getUpdates", timeout=30))
    await wait_until(lambda: env.api.bot(bot.id).poll is not None, "the long poll")
    await bot.ok("setWebhook", url="https://example.org/hook")
    assert answer_error(await asyncio.wait_for(poll, 10)) == (
        409,
        "Conflict: terminated by setWebhook request",
        None,
    )
    assert await bot.error("getUpdates") == (
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        None,
    )
    await bot.ok("deleteWebhook")
    assert await bot.ok("getUpdates") == []


# -- control API: tokens, faults, bots --------------------------------------------------------


async def test_revoked_token_gets_401_and_the_new_one_works(env: Env, bot: Bot) -> None:
    revoked = await env.control("POST", f"/sandbox/bots/{bot.id}/revoke")
    assert revoked["id"] == bot.id
    assert revoked["token"] != bot.token
    for method in ("getMe", "sendMessage", "getUpdates"):
        assert await bot.error(method) == (401, "Unauthorized", None)
    assert (await env.http.get(f"/bot{revoked['token']}/getMe")).json()["result"]["id"] == bot.id
    await env.control("DELETE", f"/sandbox/bots/{bot.id}")
    assert answer_error(await env.http.get(f"/bot{revoked['token']}/getMe"))[0] == 401
    await env.control("GET", f"/sandbox/bots/{bot.id}", expect=404)


async def test_fault_429_with_retry_after(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    fault = await env.control(
        "POST",
        "/sandbox/faults",
        json={"kind": "429", "bot_id": bot.id, "method": "sendMessage", "retry_after": 14, "times": 2},
        expect=201,
    )
    for _ in range(2):
        response = await bot.call("sendMessage", chat_id=chat_id, text="hi")
        assert response.status_code == 429
        assert response.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 14",
            "parameters": {"retry_after": 14},
        }
    assert await bot.ok("getMe")  # other methods are unaffected
    assert (await bot.ok("sendMessage", chat_id=chat_id, text="hi"))["text"] == "hi"
    assert (await env.control("GET", "/sandbox/faults"))["faults"] == []
    calls = (await env.control("GET", f"/sandbox/bots/{bot.id}/calls", params={"method": "sendMessage"}))[
        "calls"
    ]
    assert [c["error_code"] for c in calls] == [429, 429, None]
    assert fault["remaining"] == 2


async def test_faults_5xx_403_and_chat_matching(env: Env, bot: Bot) -> None:
    chat_id = await bot.private_chat()
    other_chat = await bot.private_chat({"id": 777, "first_name": "Bo"})
    await env.control("POST", "/sandbox/faults", json={"kind": "5xx", "chat_id": chat_id}, expect=201)
    assert (await bot.ok("sendMessage", chat_id=other_chat, text="unaffected"))["chat"]["id"] == other_chat
    assert await bot.error("sendMessage", chat_id=chat_id, text="x") == (502, "Bad Gateway", None)
    await env.control(
        "POST", "/sandbox/faults", json={"kind": "5xx", "status": 503, "times": None}, expect=201
    )
    assert (await bot.error("getMe"))[:2] == (503, "Service Unavailable")
    assert (await bot.error("getMe"))[0] == 503  # until removed
    assert (await env.control("DELETE", "/sandbox/faults"))["deleted"] == 1
    await env.control("POST", "/sandbox/faults", json={"kind": "403", "bot_id": bot.id}, expect=201)
    assert await bot.error("sendMessage", chat_id=chat_id, text="x") == (
        403,
        "Forbidden: bot was blocked by the user",
        None,
    )
    custom = await env.control(
        "POST",
        "/sandbox/faults",
        json={"kind": "error", "status": 400, "description": "Bad Request: PEER_ID_INVALID", "times": None},
        expect=201,
    )
    assert await bot.error("getMe") == (400, "Bad Request: PEER_ID_INVALID", None)
    await env.control("DELETE", f"/sandbox/faults/{custom['id']}")
    assert (await bot.ok("getMe"))["id"] == bot.id
    await env.control("POST", "/sandbox/faults", json={"kind": "teapot"}, expect=400)
    await env.control("DELETE", "/sandbox/faults/9999", expect=404)


async def test_slow_fault_delays_the_answer(env: Env, bot: Bot) -> None:
    await env.control(
        "POST", "/sandbox/faults", json={"kind": "slow", "method": "getMe", "delay": 0.5}, expect=201
    )
    started = time.monotonic()
    assert (await bot.ok("getMe"))["id"] == bot.id
    assert time.monotonic() - started >= 0.45
    started = time.monotonic()
    await bot.ok("getMe")  # the fault was for one call
    assert time.monotonic() - started < 0.45


async def test_validation_comes_before_faults(env: Env, bot: Bot) -> None:
    await env.control("POST", "/sandbox/faults", json={"kind": "429", "times": None}, expect=201)
    assert (await bot.error("sendMessage", text="no chat"))[1] == "Bad Request: chat_id is empty"
    assert (await bot.error("getMe"))[0] == 429


async def test_ten_thousand_bots_can_be_registered_and_all_work(env: Env) -> None:
    created = (await env.control("POST", "/sandbox/bots/bulk", json={"count": 10_000}, expect=201))["bots"]
    assert len(created) == 10_000
    assert len({b["token"] for b in created}) == len({b["id"] for b in created}) == 10_000
    for entry in [*random.Random(20240611).sample(created, 40), created[0], created[-1]]:
        me = (await env.http.get(f"/bot{entry['token']}/getMe")).json()["result"]
        assert (me["id"], me["username"]) == (entry["id"], entry["username"])
    assert len(env.api.state.bots) == 10_000


def test_ten_thousand_idle_bots_cost_little_memory() -> None:
    api = SandboxBotApi()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bots = api.create_bots(10_000)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(bots) == 10_000
    assert used / len(bots) < 2048, f"{used / len(bots):.0f} bytes per bot"


async def test_control_api_errors_and_token(env: Env, bot: Bot) -> None:
    await env.control("GET", "/sandbox/bots/123", expect=404)
    await env.control("POST", f"/sandbox/bots/{bot.id}/chats", json={"id": 5, "type": "castle"}, expect=400)
    await env.control("POST", f"/sandbox/bots/{bot.id}/chats", json={"id": -5, "type": "private"}, expect=400)
    await env.control(
        "POST",
        f"/sandbox/bots/{bot.id}/chats",
        json={"id": -5, "type": "group", "rights": {"can_fly": True}},
        expect=400,
    )
    await env.control("POST", f"/sandbox/bots/{bot.id}/updates", json={"update_id": 1}, expect=400)
    await env.control("POST", "/sandbox/bots/bulk", json={"count": 0}, expect=400)
    async with sandbox_env(control_token="let-me-in") as guarded:
        assert (await guarded.http.post("/sandbox/bots", json={})).status_code == 401
        created = await guarded.control(
            "POST", "/sandbox/bots", json={}, headers={"Authorization": "Bearer let-me-in"}, expect=201
        )
        assert (await guarded.http.get(f"/bot{created['token']}/getMe")).json()["ok"] is True


async def test_clock_option_dates_messages() -> None:
    async with sandbox_env(clock=lambda: 1_700_000_000.5) as clocked:
        bot = await clocked.new_bot()
        chat_id = await bot.private_chat()
        assert (await bot.ok("sendMessage", chat_id=chat_id, text="then"))["date"] == 1_700_000_000
        assert (await bot.inject(user_message("in")))["update"]["message"]["date"] == 1_700_000_000


async def test_reset_forgets_everything(env: Env, bot: Bot) -> None:
    await env.control("POST", "/sandbox/reset")
    assert answer_error(await env.http.get(f"/bot{bot.token}/getMe"))[0] == 401
    assert (await env.new_bot()).id == bot.id  # ids start over


async def test_tokens_are_never_logged(env: Env, bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiver() as hook:
        hook.statuses = [500] * 3
        await bot.ok("setWebhook", url=f"{hook.url}/{bot.token}")  # webhook URLs often embed the token
        await bot.inject(user_message("x"))
        await env.wait_deliveries()
    await bot.error("sendMessage", chat_id=1, text="x")
    await env.http.get(f"/bot{bot.token}/noSuchMethod")
    # The sandbox's own records and its server's (the test's httpx and aiohttp log their URLs).
    ours = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith(("chatgate", "uvicorn"))
    )
    assert "webhook delivery for bot" in ours  # the failure was logged ...
    assert bot.token.split(":")[1] not in ours  # ... without the token
