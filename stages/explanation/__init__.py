"""Explanations of the severity models: Grad-CAM (``gradcam``), the phantom's planted truth of where
the disease is (``truth``) and how well a heatmap points at it (``localisation``)."""
