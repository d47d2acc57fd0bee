"""What the app's buttons and API calls do to a session, one module per tab: each function checks nothing itself
(components.inputs does), calls into `grains` and stores or returns the result. No gradio, no HTML."""
