from tqdm import tqdm

from musicvae_lib import console


def test_terminal_text_keeps_a_bars_last_state_and_drops_a_cleared_bar():
    text = "epoch 1:  10%\repoch 1: 100%\nepoch 2:  50%\r              \rStopped\n"
    assert console.terminal_text(text) == "epoch 1: 100%\nStopped\n"


def test_the_log_keeps_a_progress_bar_at_its_last_state(tmp_path):
    log = tmp_path / "train.log"
    with console.output_to(log):
        print("Resuming")
        bar = tqdm(total=50, desc="epoch 1", mininterval=0, disable=False)  # redrawn at every update
        for _ in range(50):
            bar.update()
            bar.set_postfix(loss="1.00")
        bar.close()
        print("Stopped by max_epochs", end="")
    lines = log.read_text().splitlines()
    assert "\r" not in log.read_text() and len(lines) == 3
    assert lines[0] == "Resuming" and lines[1].startswith("epoch 1: 100%") and lines[2] == "Stopped by max_epochs"
