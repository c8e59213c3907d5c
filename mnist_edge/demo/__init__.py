"""The draw-a-digit demo: MNIST-style preprocessing, the Gradio app, feature maps."""
