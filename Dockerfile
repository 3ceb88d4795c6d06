FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN TSUBAME_DATA_DIR=/tmp/build SECRET_KEY=build ENCRYPTION_KEYS=$(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") \
    python manage.py collectstatic --noinput --verbosity 0 && rm -rf /tmp/build
EXPOSE 8000
CMD ["python", "-m", "tsubame.webserver", "-b", "0.0.0.0", "-p", "8000"]
