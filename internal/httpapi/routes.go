package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// addRoutes is the whole API surface in one place.
func addRoutes(mux *http.ServeMux, d Deps, m *metrics) {
	auth := newAuthenticator(d)
	const base = "/generativeagent/v1/call-transfers"
	mux.Handle("POST "+base, auth.require(handleCreate(d)))
	mux.Handle("GET "+base, auth.require(handleList(d)))
	mux.Handle("GET "+base+"/{id}", auth.require(handleGet(d)))
	mux.Handle(base, methodNotAllowed("GET, POST"))
	mux.Handle(base+"/{id}", methodNotAllowed("GET"))
	const conversations = "/generativeagent/v1/conversations"
	mux.Handle("GET "+conversations+"/{id}", auth.require(handleGetConversation(d)))
	mux.Handle(conversations+"/{id}", methodNotAllowed("GET"))

	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("/healthz", methodNotAllowed("GET"))
	mux.Handle("GET /readyz", handleReadyz(d))
	mux.Handle("/readyz", methodNotAllowed("GET"))
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{}))
	mux.Handle("/metrics", methodNotAllowed("GET"))
	mux.Handle("/", notFound())
}
