"""JSON in and out of the API, hardened against bodies built to crash the parser or the
renderer: every bad body is a 400, never a 500."""

from __future__ import annotations

from rest_framework import exceptions, parsers, renderers


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # '[[[[…' a hundred thousand deep exhausts the decoder's stack in a small body.
            raise exceptions.ParseError("The JSON is nested too deeply.") from None
        except LookupError:
            # "Content-Type: application/json; charset=no-such-codec"
            raise exceptions.ParseError("The body's charset is unknown; send UTF-8.") from None


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # A lone surrogate from the request ("\ud800" as a field name or a choice) echoed in
            # an error cannot be encoded as UTF-8; written as an ASCII escape it is valid JSON.
            self.ensure_ascii = True
            return super().render(data, accepted_media_type, renderer_context)
