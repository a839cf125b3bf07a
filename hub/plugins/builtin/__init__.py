"""Built-in plugins: sd-hub's own behaviour, registered like any third-party plugin."""
