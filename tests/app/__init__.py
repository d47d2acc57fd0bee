"""Tests of the Gradio app: its named API through gradio_client, its logic, and headless-browser walks."""
