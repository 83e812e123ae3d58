# rvos demo: the Gradio app with the built-in model, on CPU.
#   docker build -t rvos . && docker run --rm -p 7860:7860 rvos   →  http://127.0.0.1:7860
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False

# Fonts only: DejaVu (accented Latin, Greek, Cyrillic, Arabic), Noto Sans CJK (Chinese, Japanese,
# Korean) and Noto Color Emoji, so that any expression draws as text in captions and figures
# (the same packages as packages.txt, which Hugging Face Spaces installs). imageio-ffmpeg bundles
# its own ffmpeg and opencv-python-headless needs no libGL. A non-root user owns the app and its
# caches (~/.cache/rvos, ~/.cache/huggingface).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
        fonts-noto-cjk fonts-noto-color-emoji \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 rvos
WORKDIR /home/rvos/app

# Dependencies first so that editing the code does not reinstall them. torch comes from the
# CPU wheel index: the same version from PyPI is a multi-GB CUDA build this image cannot use.
COPY requirements.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install -r requirements.txt

COPY --chown=rvos:rvos rvos ./rvos
COPY --chown=rvos:rvos examples ./examples
COPY --chown=rvos:rvos app.py ./
USER rvos

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]
CMD ["python", "app.py"]
