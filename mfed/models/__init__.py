"""Encoders, decoders and the MultiTaskModel that joins them."""

from mfed.models.multitask import ENCODER_PREFIX, ModelFactory, MultiTaskModel, build_model, decoder_prefix

__all__ = ["ENCODER_PREFIX", "ModelFactory", "MultiTaskModel", "build_model", "decoder_prefix"]
