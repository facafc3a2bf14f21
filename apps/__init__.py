"""apps: the Gradio front-end. Built in a later issue."""
