"""Configuration serving: a node's request, its files read in shared executor jobs, the answer published."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir

from . import protocol
from .const import DOMAIN, LOGGER
from .helpers import WarnOnce, create_issue
from .node_registry import NodeRegistry
from .node_states import NodeStates
from .storage import ORDER, ConfigFileError, Storage


@dataclass(slots=True)
class Answer:
    """A configuration ready to publish."""

    name: str
    payload: str
    digest: str
    components: list[tuple[str, str]]
    warnings: list[str]


def prepare_answer(storage: Storage, node_id: str, served: Mapping[str, Any] | None = None) -> Answer:
    """Read and serialise a node's configuration (blocking: run in an executor).

    `served`: sections HA adds for the node's server (wol, reach); they win over the files.
    """
    loaded = storage.load_config(node_id)
    if served:
        loaded.config.update(served)
        order = loaded.config.get(ORDER)
        if isinstance(order, list):
            order.extend(name for name in served if name not in order)
    payload = json.dumps(loaded.config, separators=(",", ":"))
    components: list[tuple[str, str]] = []
    for name, value in loaded.components():
        if not protocol.valid_name(name) or name == "set":
            loaded.warnings.append(
                f"component {name[:64]!r} cannot be a topic level: left out of chunked answers"
            )
            continue
        components.append((name, json.dumps(value, separators=(",", ":"))))
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return Answer(loaded.name, payload, digest, components, loaded.warnings)


def prepare_answers(
    storage: Storage, node_ids: list[str], served: Mapping[str, Mapping[str, Any]]
) -> list[Answer | Exception]:
    """Prepare several answers in one executor job; a failure is returned in its place."""
    results: list[Answer | Exception] = []
    for node_id in node_ids:
        try:
            results.append(prepare_answer(storage, node_id, served.get(node_id)))
        except Exception as err:  # raised again in that request's own task
            results.append(err)
    return results


def resolve_batch(
    futures: list[asyncio.Future[Answer]], job: asyncio.Future[list[Answer | Exception]]
) -> None:
    """Hand each request its result of the shared job; a failed or cancelled job fails them all."""
    if job.cancelled():
        results: list[Answer | BaseException | None] = [None] * len(futures)
    elif (error := job.exception()) is not None:
        results = [error] * len(futures)
    else:
        results = list(job.result())
    for future, result in zip(futures, results, strict=True):
        if future.done():  # the request was replaced or cancelled meanwhile
            continue
        if result is None:
            future.cancel()
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class ConfigServer:
    """Answers configuration requests; a new request of a node replaces its answer in flight."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[object],
        base: str,
        storage: Storage,
        registry: NodeRegistry,
        states: NodeStates,
        served: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Serve from `storage` on `base`, with the sections `served` adds per node."""
        self.hass = hass
        self.entry = entry
        self.base = base
        self.storage = storage
        self.registry = registry
        self.states = states
        self.served = served
        self._answers: dict[str, asyncio.Task[None]] = {}
        # Requests of one event-loop turn, prepared together in one executor job.
        self._to_prepare: list[tuple[str, asyncio.Future[Answer]]] = []
        self._warn = WarnOnce()

    @callback
    def async_request(self, node_id: str, payload: bytes) -> None:
        """Take a valid id's request (`<base>/login/<node>/set`) and answer it."""
        try:
            request = protocol.parse_login_payload(payload)
        except ValueError as err:
            LOGGER.warning("Ignored configuration request from %s: %s", node_id, err)
            return
        if (node := self.registry.async_contact(node_id)) is None:
            # held back, unless the folder read that holding it back started finds it (a
            # flood of made-up ids costs no task per request); else it asks again later.
            # A fast read may already be over (an eager task whose executor job was done)
            if self.registry.scan_pending or node_id in self.registry.on_disk:
                self.entry.async_create_background_task(
                    self.hass,
                    self._answer_if_on_disk(node_id, request.wait_s),
                    f"smartserver {node_id} on disk",
                )
            return
        node.wait_s = request.wait_s
        self._start_answer(node_id, request.wait_s, None)

    async def _answer_if_on_disk(self, node_id: str, wait_s: float | None) -> None:
        if await self.registry.async_on_disk(node_id) and (node := self.registry.async_contact(node_id)):
            node.wait_s = wait_s
            self._start_answer(node_id, wait_s, None)

    async def async_push_config(self, node_id: str) -> None:
        """Send a node its configuration now, in the form it last asked for."""
        node = self.registry.async_contact(node_id, force=True)
        assert node is not None  # forced: never held back
        answer = await self._prepare(node_id, raise_errors=True)
        self._start_answer(node_id, node.wait_s, answer)

    @callback
    def _start_answer(self, node_id: str, wait_s: float | None, answer: Answer | None) -> None:
        self.async_cancel(node_id)
        self._answers[node_id] = self.entry.async_create_background_task(
            self.hass, self._answer(node_id, wait_s, answer), f"smartserver config for {node_id}"
        )

    @callback
    def async_cancel(self, node_id: str) -> None:
        """Stop an answer still being sent."""
        if old := self._answers.pop(node_id, None):
            old.cancel()

    @callback
    def async_stop(self) -> None:
        """Stop every answer."""
        for task in self._answers.values():
            task.cancel()

    async def _answer(self, node_id: str, wait_s: float | None, answer: Answer | None) -> None:
        try:
            if answer is None and (answer := await self._prepare(node_id, raise_errors=False)) is None:
                return
            await self._publish(node_id, wait_s, answer)
        except HomeAssistantError as err:
            LOGGER.warning("Configuration for %s not sent: %s", node_id, err)
        finally:
            if self._answers.get(node_id) is asyncio.current_task():
                del self._answers[node_id]

    async def _publish(self, node_id: str, wait_s: float | None, answer: Answer) -> None:
        topic = protocol.login_answer(self.base, node_id)
        if wait_s is None:
            await mqtt.async_publish(self.hass, topic, answer.payload, qos=1, retain=False)
        else:
            await mqtt.async_publish(self.hass, topic, str(len(answer.components)), qos=1, retain=False)
            for name, payload in answer.components:
                await asyncio.sleep(wait_s)
                await mqtt.async_publish(
                    self.hass,
                    protocol.login_component(self.base, node_id, name),
                    payload,
                    qos=1,
                    retain=False,
                )
        if node := self.registry.nodes.get(node_id):
            node.served_at = time.time()
            node.served_hash = answer.digest
            self.states.async_changed(node)

    async def _prepare(self, node_id: str, *, raise_errors: bool) -> Answer | None:
        """Read the configuration; on a parse error log it and raise a repair issue."""
        issue_id = f"config_file_{node_id}"
        try:
            answer = await self._load(node_id)
        except ConfigFileError as err:
            placeholders = {"node": node_id, "file": err.path, "line": str(err.line), "reason": err.reason}
            LOGGER.error("Configuration of %s not served: %s", node_id, err)
            create_issue(
                self.hass, issue_id, "config_file_error", placeholders, severity=ir.IssueSeverity.ERROR
            )
            if raise_errors:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="config_file_error",
                    translation_placeholders=placeholders,
                ) from err
            return None
        except OSError as err:
            LOGGER.error("Could not read the configuration of %s: %s", node_id, err)
            if raise_errors:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="config_read_error",
                    translation_placeholders={"node": node_id, "error": str(err)},
                ) from err
            return None
        ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        for warning in answer.warnings:
            self._warn(f"{node_id}\n{warning}", "Configuration of %s: %s", node_id, warning)
        self.registry.async_rename({node_id: answer.name})
        return answer

    def _load(self, node_id: str) -> asyncio.Future[Answer]:
        """Prepare the node's answer together with the other requests of this event-loop turn."""
        future: asyncio.Future[Answer] = self.hass.loop.create_future()
        if not self._to_prepare:
            self.hass.loop.call_soon(self._prepare_batch)
        self._to_prepare.append((node_id, future))
        return future

    @callback
    def _prepare_batch(self) -> None:
        batch, self._to_prepare = self._to_prepare, []
        job = self.hass.async_add_executor_job(
            prepare_answers, self.storage, [n for n, _f in batch], self.served
        )
        job.add_done_callback(partial(resolve_batch, [future for _n, future in batch]))
