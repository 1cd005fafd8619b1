/* main.c -- zlbench entry point (being written). */
int main(void)
{
    return 0;
}
