/* Runs every unit test group; exit status is the number of failures. */
#include "unit.h"

int
main(void)
{
	int failed = 0;

	failed += run_addr_tests();
	failed += run_smtp_parse_tests();
	failed += run_smtp_data_tests();
	failed += run_config_tests();
	failed += run_config_edit_tests();
	failed += run_maildir_tests();
	failed += run_dir_tests();
	failed += run_dir_json_tests();
	failed += run_admin_json_tests();
	failed += run_admin_html_tests();
	failed += run_passwd_tests();
	failed += run_queue_tests();
	failed += run_base64_tests();
	failed += run_pop3_tests();
	failed += run_buf_tests();
	failed += run_counter_tests();
	failed += run_authfail_tests();
	failed += run_safefs_tests();
	failed += run_log_tests();
	failed += run_human_tests();
	failed += run_span_tests();
	failed += run_worker_tests();
	failed += run_pop3_read_tests();
	failed += run_committer_tests();
	failed += run_core_tests();
	failed += run_core_seen_tests();
	failed += run_imap_parse_tests();
	failed += run_mime_tests();
	failed += run_store_tests();
	failed += run_store_cache_tests();
	failed += run_imap_view_tests();
	failed += run_imap_folder_tests();
	failed += run_mailnotify_tests();
	failed += run_deflate_tests();
	failed += run_imap_sort_tests();
	failed += run_stats_tests();
	failed += run_metrics_tests();
	failed += run_log_ring_tests();
	failed += run_chart_tests();
	failed += run_milter_tests(); /* issue 15 part 2 */
	/* issue 15 part 1 */
	failed += run_dkim_tests();
	failed += run_dnsbl_tests(); /* issue 15 part 3 */
	/* issue 15 part 4 */
	failed += run_sendlimit_tests();
	return failed != 0;
}
