package service

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

func tracerForTest() trace.Tracer { return otel.Tracer("test") }
