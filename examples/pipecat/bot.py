"""A pipecat bot that takes Switchback calls over the Twilio Media Streams wire.

It is a stock Twilio bot: FastAPI takes the WebSocket Switchback dials, pipecat's
TwilioFrameSerializer reads and writes the stream, Silero VAD (shipped inside
pipecat, run offline) hears when the caller speaks. What it says it makes itself:
a chime to greet, then the caller's own words played back. Interrupt it and it
stops (pipecat sends Twilio's "clear"). Press a digit and it hands the call back
to Switchback with an output context (the switchback.handback extension); press
* and it ends the call the Twilio way instead: its pipeline ends and pipecat's
auto hang-up POSTs Twilio's call update to Switchback's API.

What it adds with Switchback's extensions: it reads switchback.context, so a
conversation's later call continues the count of utterances the earlier ones
saved (and records what it was given, as a custom event); and after a hand-back
by INVITE it keeps listening to the bridged call, telling the caller's track
from the return leg's, transcribing the caller and reporting what it heard.

No API key, no network: run it next to `switchback serve` (see README.md).
"""

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import struct
import time

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from loguru import logger

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    EndFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    SpeechOutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

RATE = 8000  # the telephone's rate: no resampling anywhere

app = FastAPI()
settings = argparse.Namespace(auth_token="", public_url="", api_base_url="", task="pipecat-echo")


def chime() -> bytes:
    """Three rising tones, about a second of 16-bit PCM at 8 kHz."""
    out = bytearray()
    per = RATE * 3 // 10
    for freq in (523.25, 659.25, 783.99):
        for i in range(per):
            env = min(1.0, min(i, per - i) / 200)  # 25 ms fades
            out += struct.pack("<h", int(12000 * env * math.sin(2 * math.pi * freq * i / RATE)))
    return bytes(out)


def twilio_signature(token: str, url: str) -> str:
    """Twilio's X-Twilio-Signature of a request without POST parameters."""
    mac = hmac.new(token.encode(), url.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def message(event: str, **fields) -> OutputTransportMessageUrgentFrame:
    """A switchback.* message: the serializer sends it as it is."""
    return OutputTransportMessageUrgentFrame(message={"event": event, **fields})


class TrackSerializer(TwilioFrameSerializer):
    """pipecat's Twilio serializer, told the tracks apart. pipecat mixes every
    media message into one input stream; after an INVITE hand-back Switchback
    streams both legs of the bridged call, the caller as "inbound" and the
    return leg as "outbound". This one counts each track and passes on only
    the caller's audio, so the return leg's voice is neither echoed nor taken
    for a barge-in. It also logs the stream's end (Twilio's "stop")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames = {"inbound": 0, "outbound": 0}

    async def deserialize(self, data):
        try:
            msg = json.loads(data)
        except (TypeError, ValueError):
            return await super().deserialize(data)
        event = msg.get("event") if isinstance(msg, dict) else None
        if event == "media":
            track = (msg.get("media") or {}).get("track", "inbound")
            self.frames[track] = self.frames.get(track, 0) + 1
            if track != "inbound":
                return None
        elif event == "stop":
            logger.info(f"stop: the stream of call {(msg.get('stop') or {}).get('callSid')} ended")
        return await super().deserialize(data)


class EchoBot(FrameProcessor):
    """Greets, echoes each utterance once the caller stops, yields on barge-in,
    and hands the call back on a digit; after a hand-back by INVITE, listens."""

    def __init__(self, task_name: str, context: dict, serializer: TrackSerializer, follows: bool):
        super().__init__()
        self._task_name = task_name
        self._context = context  # switchback.context, {} without it
        self._serializer = serializer
        self._follows = follows  # Switchback streams the bridged call after an INVITE hand-back
        conversation = context.get("conversation") or {}
        saved = conversation.get("state")
        # The state the conversation's earlier calls saved: go on from it.
        self._state = dict(saved) if isinstance(saved, dict) else {}
        self._utterances = int(self._state.get("utterances", 0))
        self._speaking = False  # the caller, by VAD
        self._bot_speaking = False
        self._heard = bytearray()
        self._handed_back = False
        self._listening_since = None  # the track counts at the hand-back
        self._reported = 0.0

    async def greet(self):
        # What Switchback told the bot beyond Twilio's start, for the record.
        conversation = self._context.get("conversation") or {}
        await self.push_frame(
            message(
                "switchback.event",
                type="context",
                data={
                    "transferId": str(self._context.get("transferId", "")),
                    "returnTransferType": str(self._context.get("returnTransferType", "")),
                    "legs": str(len(conversation.get("legs") or [])),
                    "state": json.dumps(conversation.get("state"), sort_keys=True),
                },
            )
        )
        # Speech output frames: pipecat tracks them to know the bot is
        # speaking, which is what makes the caller's voice a barge-in.
        await self.push_frame(SpeechOutputAudioRawFrame(audio=chime() * 2, sample_rate=RATE, num_channels=1))
        await self.push_frame(message("switchback.transcript", role="agent", text="[chime]", final=True))

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            self._heard.clear()
            if self._bot_speaking and not self._handed_back:
                # Barge-in: pipecat drops what it has not sent and the
                # serializer tells Switchback to "clear" what it queued.
                logger.info("barge-in: clearing the bot's audio")
                await self.broadcast_interruption()
                await self.push_frame(message("switchback.event", type="barge-in", data={}))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            await self._echo()
        elif isinstance(frame, InputAudioRawFrame):
            if self._speaking and len(self._heard) < RATE * 2 * 10:
                self._heard += frame.audio
            await self._report_listening()
            return  # heard, not passed on: the output plays only the bot
        elif isinstance(frame, InputDTMFFrame):
            digit = str(frame.button.value)
            if digit == "*" and not self._handed_back:
                # A stock Twilio bot's goodbye: end the pipeline; the
                # serializer hangs up over REST (auto_hang_up).
                logger.info("*: ending the call")
                self._handed_back = True
                await self.push_frame(message("switchback.transcript", role="caller", text="pressed *", final=True))
                await self.push_frame(EndFrame())
                return
            await self._hand_back(digit)
            return
        await self.push_frame(frame, direction)

    async def _echo(self):
        if not self._heard:
            return
        heard = bytes(self._heard)
        self._heard.clear()
        seconds = len(heard) / (RATE * 2)
        if self._handed_back:
            if self._listening_since is not None:
                # The bridged call: transcribed, not answered.
                await self.push_frame(
                    message("switchback.transcript", role="caller", text=f"[speech {seconds:.2f} s, bridged]", final=True)
                )
            return
        self._utterances += 1
        self._state["utterances"] = self._utterances
        await self.push_frame(
            message("switchback.transcript", role="caller", text=f"[speech {seconds:.2f} s]", final=True)
        )
        await self.push_frame(message("switchback.state", state=self._state))
        await self.push_frame(SpeechOutputAudioRawFrame(audio=heard, sample_rate=RATE, num_channels=1))

    async def _report_listening(self):
        """While following the bridged call, says once a second how many
        frames of each track it heard since the hand-back."""
        if self._listening_since is None or time.monotonic() - self._reported < 1.0:
            return
        self._reported = time.monotonic()
        frames = self._serializer.frames
        await self.push_frame(
            message(
                "switchback.event",
                type="listening",
                data={track: str(frames.get(track, 0) - self._listening_since.get(track, 0)) for track in ("inbound", "outbound")},
            )
        )

    async def _hand_back(self, digit: str):
        if self._handed_back:
            await self.push_frame(
                message("switchback.transcript", role="caller", text=f"pressed {digit}", final=True)
            )
            return
        self._handed_back = True
        logger.info(f"digit {digit}: handing the call back")
        self._state.update(utterances=self._utterances, lastDigit=digit)
        await self.push_frame(message("switchback.transcript", role="caller", text=f"pressed {digit}", final=True))
        # Not urgent: pipecat paces its audio to real time, so an urgent
        # message would overtake what it has not sent yet. Queued after that
        # audio, the hand-back leaves once it has all gone to Switchback,
        # which plays it out before handing the call back (finishAudio). No
        # barge-in interrupts the bot from now on: that would drop the
        # hand-back with the audio.
        await self.push_frame(
            OutputTransportMessageFrame(
                message={
                    "event": "switchback.handback",
                    "outputContext": {
                        "transferType": "AGENT",
                        "currentTaskName": self._task_name,
                        "referenceVariables": {"bot": "pipecat"},
                        "transferVariables": {"digit": digit, "utterances": str(self._utterances)},
                    },
                    "state": self._state,
                    "finishAudio": True,
                }
            )
        )
        if self._follows:
            # The call is not over: once bridged to the returnURI, Switchback
            # streams both legs until it ends.
            self._listening_since = dict(self._serializer.frames)


@app.get("/healthz")
async def healthz():
    return PlainTextResponse("ok")


@app.websocket("/media")
async def media(websocket: WebSocket):
    if settings.auth_token:
        want = twilio_signature(settings.auth_token, settings.public_url)
        got = websocket.headers.get("x-twilio-signature", "")
        if not hmac.compare_digest(want, got):
            logger.warning("refused a handshake without a valid X-Twilio-Signature")
            await websocket.close(code=1008)  # before accept: HTTP 403
            return
    await websocket.accept()

    # Twilio's first two messages: connected, then start with the SIDs; then
    # Switchback's own, switchback.context, with the conversation to resume.
    stream = websocket.iter_text()
    await stream.__anext__()
    start = json.loads(await stream.__anext__())["start"]
    params = start.get("customParameters", {})
    context = json.loads(await stream.__anext__())
    if context.get("event") != "switchback.context":
        context = {}
    resumed = len((context.get("conversation") or {}).get("legs") or [])
    logger.info(
        f"call {start['callSid']} for transfer {params.get('transferId')}, task {params.get('taskName')}, "
        f"{resumed} earlier calls"
    )

    hang_up = bool(settings.api_base_url and settings.auth_token)
    serializer = TrackSerializer(
        stream_sid=start["streamSid"],
        call_sid=start["callSid"],
        account_sid=start["accountSid"],
        auth_token=settings.auth_token or None,
        # pipecat's auto hang-up POSTs Twilio's call update to Switchback.
        base_url=settings.api_base_url or None,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=hang_up),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    bot = EchoBot(
        params.get("taskName") or settings.task,
        context=context,
        serializer=serializer,
        follows="outbound" in start.get("tracks", []),
    )
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.4)))
    pipeline = Pipeline([transport.input(), vad, bot, transport.output()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport, _ws):
        await bot.greet()

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport, _ws):
        logger.info(f"Switchback closed the stream of call {start['callSid']}")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--auth-token", default=os.getenv("SWITCHBACK_AGENT_AUTH_TOKEN", ""),
                   help="the agent's authToken in Switchback's config: checks X-Twilio-Signature, "
                        "and with --api-base-url hangs up over REST")
    p.add_argument("--public-url", default="",
                   help="the agent's URL as Switchback's config has it (what it signs); "
                        "default ws://HOST:PORT/media")
    p.add_argument("--api-base-url", default="",
                   help="Switchback's API root, e.g. http://127.0.0.1:8080: pipecat's auto hang-up goes there")
    args = p.parse_args()
    settings.auth_token = args.auth_token
    settings.public_url = args.public_url or f"ws://{args.host}:{args.port}/media"
    settings.api_base_url = args.api_base_url
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
