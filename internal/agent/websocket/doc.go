// Package websocket is the agent that gives a call to an external voice
// agent over a WebSocket, speaking the Twilio Media Streams wire so agents
// written for Twilio (pipecat's TwilioFrameSerializer and the like) work
// unchanged, plus a few switchback.* messages a stock agent ignores: the
// transfer's context, the hand-back with its output context, saved state,
// transcripts and custom events.
//
// Switchback is the client, as Twilio is: a Factory dials the agent's URL
// before the call is answered, so an agent that cannot be reached never
// answers a caller into silence; its fallback takes the call instead, and
// takes over on the same call when the connection is lost mid-call. After
// an INVITE hand-back the same connection may keep listening to both legs.
// HangUpHandler serves Twilio's REST call update, so an agent that ends its
// call the Twilio way (Status=completed) hands it back.
package websocket
